"""ONNX Runtime under a local model on CPU: exported once, checked against torch, then served.

The transformer body (what ``transformers`` computes from ``input_ids``,
``attention_mask`` and ``token_type_ids``: the last hidden state, or a head's logits) is
exported with ``torch.onnx.export`` into the model cache, under the model's name and
revision, and reused by every later start and by every replica sharing the cache. A
cache entry is written to a temporary folder and renamed into place, so a reader never
sees half an export. Tokenization, pooling, normalisation, SPLADE's weighting and
rerank's activation stay the torch code of ``encoders``: ``OnnxBody`` takes the place of
the transformers model and answers with the same tensors.

Before it serves, the ONNX body is run on ``encoders.CHECK_SENTENCES`` beside torch:
fp32 must agree to ``FP32_MIN_COSINE`` or the model stays on torch (with a log line);
int8 (dynamic, per-channel) reports its agreement and is refused below its floor.

Imports torch and ONNX Runtime: only the local backend's loading path imports it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from kubeinfer.errors import ElasticsearchError
from .engine import FP32_MIN_COSINE, EngineOptions
from .exported import AUTO_CLASSES, export_entry, model_key, session, write_serving
from .inputs import read_json

log = logging.getLogger(__name__)

# A model's cache entry, its key and its sessions are the torch-free server's too.
TORCHSCRIPT_OPSET = 17


def publish_export(build: Any, target: Path) -> Path:
    """``target``, built by ``build(folder)`` into a temporary folder unless it exists already."""
    if (target / "model.onnx").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    log.info("exporting [%s] to ONNX, once per model revision", target)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # the exporter and the quantizer narrate every graph pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(scratch)
        logging.disable(previous)
        try:
            os.replace(scratch, target)
        except OSError:
            if not (target / "model.onnx").is_file():  # not another replica winning the race
                raise
    finally:
        logging.disable(previous)
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class _Body(torch.nn.Module):
    def __init__(self, model: Any, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask), self.output)


class _BodyWithTypes(_Body):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids), self.output)


def export(model: Any, folder: Path) -> None:
    """Write ``model``'s transformer body to ``folder/model.onnx``, batch and length dynamic.

    The TorchScript exporter first: on all-MiniLM-L6-v2 its graph ran 1.09x (fp32) and 1.12x
    (int8) faster than the dynamo exporter's on one thread, which guards every attention
    softmax with an ``IsNaN``/``Where`` pass that ONNX Runtime cannot fuse away. The dynamo
    exporter takes over where the TorchScript one fails (or is gone from torch)."""
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.uses_token_types else [])
    body = (_BodyWithTypes if model.uses_token_types else _Body)(model.model, model.output_name).eval()
    example = model.collate(model.encode_texts(["an example sentence to trace", "a second one"]))
    inputs = tuple(example[name] for name in names)
    target = str(folder / "model.onnx")
    try:
        torch.onnx.export(
            body, inputs, target, dynamo=False, opset_version=TORCHSCRIPT_OPSET, input_names=names,
            output_names=["output"], dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
        )
        return
    except Exception as exc:  # noqa: BLE001 - the dynamo exporter below is the fallback
        log.warning("TorchScript export failed (%s: %s); exporting with dynamo", type(exc).__name__, exc)
        for stale in folder.iterdir():
            stale.unlink()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max(model.max_length, 16))
    torch.onnx.export(
        body, inputs, target, dynamo=True, input_names=names, output_names=["output"],
        dynamic_shapes={n: {0: batch, 1: length} for n in names}, external_data=True, verbose=False,
    )


def quantize_int8(fp32: Path, folder: Path) -> None:
    """Dynamic int8 quantization of ``fp32``, weights per output channel (per-tensor loses too much)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference leaves some of the TorchScript graph's MatMul outputs untyped: they are float.
    quantize_dynamic(str(fp32 / "model.onnx"), str(folder / "model.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": TensorProto.FLOAT})


class OnnxBody:
    """An ONNX Runtime session with the calling convention of the transformers model it
    replaces: keyword tensors in, an object with ``last_hidden_state`` or ``logits`` out.

    After ``add_lanes(n)`` it also holds n one-thread sessions and a thread for each:
    ``lanes`` runs functions on those threads, and a call made from a lane's thread runs on
    that lane's session (the torch code around it on one thread too). Parts of a batch then run side by side, each on one core, instead
    of one after the other on all of them: small models' operators are too short to keep
    several threads of one session busy (on two cores, two one-thread sessions ran batches
    of 32 short sentences 1.3x faster than one two-thread session in fp32, 1.5x in int8).
    Each lane holds its own copy of the weights."""

    def __init__(self, folder: Path, config: Any, output: str, threads: int, *, spin: bool = False) -> None:
        # With lanes to come, this session runs lone inputs only, which its threads answer
        # sooner spinning than waking (3.2-3.3 ms against 3.8-4.3 ms for a sentence of
        # MiniLM on two threads): ``spin``.
        self.session = session(folder, threads, spin=spin)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config, self.output, self.folder = config, output, folder
        self.lanes: ThreadPoolExecutor | None = None
        self.lane_count = 0
        self._local = threading.local()

    def add_lanes(self, count: int) -> None:
        """``count`` one-thread sessions of the same model, each on a thread of ``lanes``."""
        free = [session(self.folder, 1) for _ in range(count)]
        lock, local = threading.Lock(), self._local

        def enter_lane() -> None:  # holds no reference to self: the lanes' threads must not keep it alive
            torch.set_num_threads(1)  # OpenMP's thread count is the calling thread's own
            with lock:
                local.session = free.pop()

        self.lanes = ThreadPoolExecutor(count, thread_name_prefix="onnx-lane", initializer=enter_lane)
        self.lane_count = count

    def close(self) -> None:
        """End the lanes' threads, and with them their sessions. The model's batches are over
        (its backend closes the batcher first): idle lanes end at once."""
        lanes, self.lanes = self.lanes, None
        if lanes is not None:
            lanes.shutdown(wait=True, cancel_futures=True)

    def __call__(self, **batch: torch.Tensor) -> SimpleNamespace:
        feeds = {name: batch[name].numpy() for name in self.inputs}
        (output,) = getattr(self._local, "session", self.session).run(None, feeds)
        return SimpleNamespace(**{self.output: torch.from_numpy(np.asarray(output))})


def lane_count(folder: Path, threads: int, max_memory: int) -> int:
    """How many one-thread lanes (see ``OnnxBody``) a ``threads``-thread model in ``folder``
    gets: one per thread, if their copies of the model fit in ``max_memory``; else none."""
    if threads < 2:
        return 0
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return threads if threads * size <= max_memory else 0


def switch_to_onnx(model: Any, options: EngineOptions, *, threads: int,
                   cache_dir: str | os.PathLike[str] | None, lanes_max_memory: int = 0) -> dict[str, Any]:
    """Put ``model`` on ONNX Runtime when it agrees with torch; what runs it, as a dict
    (``engine``, ``quantization``, ``cosine``, ``lanes``). Raises when int8 is asked for and
    cannot serve. The check runs before any lane exists; lanes run the same session's model."""
    int8 = options.quantization == "int8"
    items = model.check_items()
    reference = model.run(items)
    torch_body = model.model
    name, _ = model_key(model.path)
    task_type = next(task for task, auto_class in AUTO_CLASSES.items() if auto_class == model.auto_class)
    entry = export_entry(model.path, task_type, cache_dir)
    try:
        fp32 = publish_export(lambda folder: export(model, folder), entry / "fp32")
        lanes = 0 if int8 else lane_count(fp32, threads, lanes_max_memory)
        model.model = OnnxBody(fp32, torch_body.config, model.output_name, threads, spin=lanes > 0)
        agreement = model.agreement(reference, model.run(items))
    except Exception as exc:  # an architecture the exporter cannot trace: torch still serves it
        model.model = torch_body
        if int8:
            raise ElasticsearchError(500, "status_exception", f"Cannot quantize model [{name}] to int8: its ONNX "
                                     f"export failed ({type(exc).__name__}: {exc})") from None
        log.warning("model [%s]: ONNX export failed (%s: %s); serving with torch", name, type(exc).__name__, exc)
        return {"engine": "torch", "quantization": "none"}
    if agreement < FP32_MIN_COSINE:
        model.model = torch_body
        if int8:
            raise ElasticsearchError(500, "status_exception", f"Cannot quantize model [{name}] to int8: its fp32 "
                                     f"ONNX export agrees with torch to only {agreement:.6f}")
        log.warning("model [%s]: ONNX Runtime agrees with torch to a mean cosine of %.6f, below %s; "
                    "serving with torch", name, agreement, FP32_MIN_COSINE)
        return {"engine": "torch", "quantization": "none"}
    if not int8:
        log.info("model [%s]: ONNX Runtime fp32, mean cosine %.6f to torch on %d check inputs",
                 name, agreement, len(items))
        _mark_servable(fp32, model, task_type, agreement)
        return _with_lanes(model, name, lanes, threads, lanes_max_memory,
                           {"engine": "onnx", "quantization": "none", "cosine": agreement})
    quantized = publish_export(lambda folder: quantize_int8(fp32, folder), entry / "int8")
    lanes = lane_count(quantized, threads, lanes_max_memory)
    model.model = OnnxBody(quantized, torch_body.config, model.output_name, threads, spin=lanes > 0)
    agreement = model.agreement(reference, model.run(items))
    log.info("model [%s]: ONNX Runtime int8, mean cosine %.4f to fp32 on %d check inputs (floor %s)",
             name, agreement, len(items), options.int8_min_cosine)
    if agreement < options.int8_min_cosine:
        raise ElasticsearchError(
            500, "status_exception",
            f"Refusing to serve model [{name}] in int8: its mean cosine to fp32 on the check inputs is "
            f"{agreement:.4f}, below the floor of {options.int8_min_cosine} (KUBEINFER_INT8_MIN_COSINE)",
        )
    _mark_servable(quantized, model, task_type, agreement)
    return _with_lanes(model, name, lanes, threads, lanes_max_memory,
                       {"engine": "onnx", "quantization": "int8", "cosine": agreement})


def _with_lanes(model: Any, name: str, lanes: int, threads: int, max_memory: int,
                running: dict[str, Any]) -> dict[str, Any]:
    if lanes:
        model.model.add_lanes(lanes)
        running["lanes"] = lanes
    elif threads > 1:
        log.info("model [%s]: %d more copies of it would pass KUBEINFER_CPU_LANES_MAX_MEMORY (%d bytes); "
                 "every batch runs on one %d-thread session", name, threads, max_memory, threads)
    return running


def _mark_servable(folder: Path, model: Any, task_type: Any, agreement: float) -> None:
    """Write what ``exported.ExportedModel`` needs to serve ``folder`` without torch. Only a
    checked export gets it; a read-only cache keeps the export torch-only (logged)."""
    facts: dict[str, Any] = {
        "task_type": task_type.value, "max_length": model.max_length, "pad_id": model.pad_id,
        "uses_token_types": model.uses_token_types, "prompts": getattr(model, "prompts", {}),
        "cosine": agreement,
    }
    if hasattr(model, "pooling_modes"):
        modules = read_json(model.path / "modules.json")
        dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")] if isinstance(modules, list) else []
        facts.update(pooling_modes=model.pooling_modes, normalize=model.normalize, dimensions=model.dimensions,
                     dense=[{"path": m.get("path", ""), "activation": activation}
                            for m, (_, activation) in zip(dense, model.dense)])
    if hasattr(model, "vocabulary"):
        facts.update(vocabulary=model.vocabulary, special_ids=sorted(int(i) for i in model.excluded.tolist()))
    if hasattr(model, "activation"):
        facts.update(activation=model.activation, num_labels=model.num_labels)
    try:
        write_serving(folder, facts)
    except OSError as exc:
        log.warning("model [%s]: cannot mark its export as servable without torch: %s", model.path.name, exc)
