"""Local models served from their ONNX export alone: ONNX Runtime, tokenizers and numpy.

A model exported by ``onnx_runtime`` (with torch, once per model revision) leaves in the
model cache its ONNX graph and ``serving.json``: what the torch code around the graph
does (pooling, normalisation, Dense layers, SPLADE's weighting, rerank's activation),
its maximum length, and how closely the graph agreed with torch when it was checked.
``ExportedModel`` does the same in numpy, with the model folder's ``tokenizer.json``, so a
server on CPU needs neither torch nor transformers: it starts in a fraction of the time
and its image is a fraction of the size. A model with no export in the cache cannot be
served this way; ``kubeinfer export`` (or any server with torch) writes one.

Imports ONNX Runtime, tokenizers and numpy, never torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from kubeinfer.catalog import TaskType
from .inputs import CHECK_SENTENCES, CPU_PASS_COST_TOKENS, Encoded, cheapest_slices, read_json

log = logging.getLogger(__name__)

# Bump when the export changes: older cache entries are then left alone, not misread.
# 3: keyed by the transformers auto class, with serving.json (2: the TorchScript
# exporter's graph, 1: dynamo's).
EXPORT_FORMAT = "3"
SERVING_FILE = "serving.json"
# The transformers auto class whose body each task exports: the cache entry's name.
AUTO_CLASSES = {
    TaskType.TEXT_EMBEDDING: "AutoModel",
    TaskType.SPARSE_EMBEDDING: "AutoModelForMaskedLM",
    TaskType.RERANK: "AutoModelForSequenceClassification",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")
_EDGE = 1 << 20
# What a server on CPU without torch reports as its runtime.
CPU_FLOAT32 = SimpleNamespace(device="cpu", dtype="float32", on_gpu=False)


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where exports live: beside the downloaded models, so they share the models' volume."""
    if cache_dir is not None:
        return Path(cache_dir) / "kubeinfer-onnx"
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "kubeinfer-onnx"


def model_key(path: Path) -> tuple[str, str]:
    """(model name, revision) of a model folder. A Hugging Face snapshot names both
    (``models--org--name/snapshots/<commit>``). Another folder is named by its own name
    and revised by its configs' contents and its weights' names, sizes and first and last
    MiB: cheap to read at every start, and changed by any new training of the weights."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--"), path.name
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file() or file.suffix not in _WEIGHT_SUFFIXES:
            continue
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}:{size}:".encode())
        with file.open("rb") as stream:
            digest.update(stream.read(_EDGE))
            if size > 2 * _EDGE:
                stream.seek(-_EDGE, os.SEEK_END)
                digest.update(stream.read(_EDGE))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-") or "model", digest.hexdigest()[:16]


def export_entry(path: Path, task_type: TaskType, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The cache folder of a model's exports (``fp32/``, ``int8/``) for a task."""
    name, revision = model_key(path)
    return cache_root(cache_dir) / name / revision / f"{AUTO_CLASSES[task_type]}-v{EXPORT_FORMAT}"


def servable_export(path: Path, task_type: TaskType, quantization: str,
                    cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The export folder a server without torch can run, or ``None``: one that passed its
    check against torch (``serving.json`` is written only then) at the precision asked."""
    folder = export_entry(path, task_type, cache_dir) / ("int8" if quantization == "int8" else "fp32")
    if (folder / "model.onnx").is_file() and (folder / SERVING_FILE).is_file() and (path / "tokenizer.json").is_file():
        return folder
    return None


def write_serving(folder: Path, facts: dict[str, Any]) -> None:
    """``serving.json`` beside a checked export: it marks the export as servable."""
    scratch = folder / f".{SERVING_FILE}.{os.getpid()}"
    scratch.write_text(json.dumps(facts, indent=1, sort_keys=True))
    os.replace(scratch, folder / SERVING_FILE)


def session(folder: Path, threads: int, *, spin: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning unless asked: a spinning pool takes
    # the cores the event loop and the tokenizer need to fill the next batch. On two cores
    # with two threads this gave 1.16-1.21x torch's throughput at 64 clients instead of
    # 0.96-1.02x, for a little single-request latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


class ExportedModel:
    """An exported model: tokenizer, ONNX Runtime session and the numpy code around it.

    Offers what the backend and the batcher call on a torch ``LocalModel``: ``encode_texts``,
    ``encode_pairs``, ``run`` (from one worker thread), ``warmup_items``, ``describe``,
    ``close``, and ``prompts``, ``max_length``, ``runtime``."""

    def __init__(self, path: Path, folder: Path, threads: int) -> None:
        from tokenizers import Tokenizer

        facts = json.loads((folder / SERVING_FILE).read_text())
        self.path, self.folder, self.facts = path, folder, facts
        self.task_type = TaskType(facts["task_type"])
        self.runtime = CPU_FLOAT32
        self.max_length = int(facts["max_length"])
        self.pad_id = int(facts["pad_id"])
        self.uses_token_types = bool(facts["uses_token_types"])
        self.prompts: dict[str, str] = dict(facts.get("prompts") or {})
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # Truncation is the tokenizer's state: the event loop and a thread for large
        # requests take turns.
        self._tokenizer_lock = threading.Lock()
        self.session = session(folder, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.dense = [_load_dense(path / module["path"], module["activation"]) for module in facts.get("dense", [])]
        if self.task_type is TaskType.SPARSE_EMBEDDING:
            # The token texts torch's tokenizer gave at export time, the keys of the answers.
            self.vocabulary: list[str | None] = facts["vocabulary"]
            self.excluded = np.array(sorted(facts["special_ids"]), dtype=np.int64)

    # ---- caller's side: tokenizers' own truncation, as transformers' fast tokenizers do
    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        with self._tokenizer_lock:
            return self._encode_texts(texts)

    def encode_pairs(self, query: str, documents: Sequence[str]) -> list[Encoded]:
        with self._tokenizer_lock, _truncating(self.tokenizer, self.max_length):
            encodings = self.tokenizer.encode_batch([(query, document) for document in documents])
        return [Encoded(list(e.ids), list(e.type_ids) if self.uses_token_types else None) for e in encodings]

    def _encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        encodings = self.tokenizer.encode_batch(list(texts))
        long = {i for i, e in enumerate(encodings) if len(e.ids) > self.max_length}
        if long:  # cut again, special tokens kept, as transformers' truncation=True does
            with _truncating(self.tokenizer, self.max_length):
                for i, cut in zip(sorted(long), self.tokenizer.encode_batch([texts[i] for i in sorted(long)])):
                    encodings[i] = cut
        return [Encoded(list(e.ids), list(e.type_ids) if self.uses_token_types else None, i in long)
                for i, e in enumerate(encodings)]

    # ---- worker's side ----------------------------------------------------------------
    def run(self, items: Sequence[Encoded]) -> list[Any]:
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        outputs: list[Any] = [None] * len(items)
        for piece in cheapest_slices([len(items[i]) for i in order], CPU_PASS_COST_TOKENS):
            chosen = order[piece.start:piece.stop]
            for index, output in zip(chosen, self.forward([items[i] for i in chosen])):
                outputs[index] = output
        return outputs

    def forward(self, items: Sequence[Encoded]) -> list[Any]:
        width = max(len(item) for item in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        types = np.zeros((len(items), width), dtype=np.int64)
        for row, item in enumerate(items):
            n = len(item)
            ids[row, :n] = item.input_ids
            mask[row, :n] = 1
            if item.token_type_ids is not None:
                types[row, :n] = item.token_type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (output,) = self.session.run(None, {name: feeds[name] for name in self.inputs})
        output = np.asarray(output, dtype=np.float32)
        if self.task_type is TaskType.TEXT_EMBEDDING:
            return self._embeddings(output, mask).tolist()
        if self.task_type is TaskType.SPARSE_EMBEDDING:
            return self._sparse(output, mask)
        return self._scores(output).tolist()

    def _embeddings(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        pooled = np.concatenate([_pool(mode, hidden, mask) for mode in self.facts["pooling_modes"]], axis=-1)
        for weight, bias, activation in self.dense:
            pooled = pooled @ weight.T + (bias if bias is not None else 0.0)
            pooled = np.tanh(pooled) if activation == "tanh" else pooled
        if self.facts.get("normalize"):
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return pooled

    def _sparse(self, logits: np.ndarray, mask: np.ndarray) -> list[dict[str, float]]:
        weights = (np.log1p(np.maximum(logits, 0.0)) * mask[..., None].astype(np.float32)).max(axis=1)
        if len(self.excluded):
            weights[:, self.excluded] = 0.0
        out = []
        for row in weights:
            ids = np.flatnonzero(row > 0)
            ids = ids[np.argsort(-row[ids], kind="stable")]
            out.append({self.vocabulary[i]: float(row[i]) for i in ids.tolist() if self.vocabulary[i] is not None})
        return out

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        if logits.shape[-1] == 1:
            scores = logits[:, 0]
            return 1.0 / (1.0 + np.exp(-scores)) if self.facts.get("activation") == "sigmoid" else scores
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True))[:, -1]

    def warmup_items(self) -> list[Encoded]:
        if self.task_type is TaskType.RERANK:
            return self.encode_pairs("warm-up", ["warm-up"])
        return self.encode_texts(["warm-up"])

    def check_items(self) -> list[Encoded]:
        if self.task_type is TaskType.RERANK:
            return self.encode_pairs(CHECK_SENTENCES[2], list(CHECK_SENTENCES))
        return self.encode_texts(CHECK_SENTENCES)

    def describe(self) -> dict[str, Any]:
        return {"dimensions": int(self.facts["dimensions"])} if "dimensions" in self.facts else {}

    def close(self) -> None:
        self.session = None


class _truncating:
    """Pair truncation (longest first, to the model's maximum) for one batch of encodes."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __enter__(self) -> None:
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")

    def __exit__(self, *exc: Any) -> None:
        self.tokenizer.no_truncation()


def _pool(mode: str, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(hidden.dtype)
    lengths = np.maximum(weights.sum(axis=1), 1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(weights == 0, -1e9, hidden).max(axis=1)
    if mode == "mean":
        return (hidden * weights).sum(axis=1) / lengths
    if mode == "mean_sqrt_len":
        return (hidden * weights).sum(axis=1) / np.sqrt(lengths)
    if mode == "weightedmean":
        positions = np.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
        w = weights * positions
        return (hidden * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-9)
    if mode == "lasttoken":
        last = np.maximum(mask.sum(axis=1), 1) - 1
        return hidden[np.arange(hidden.shape[0]), last]
    raise ValueError(f"unsupported pooling mode [{mode}]")


def _load_dense(folder: Path, activation: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    config = read_json(folder / "config.json") or {}
    weights_file = folder / "model.safetensors"
    if not weights_file.exists():
        raise ValueError(f"the Dense layer in [{folder}] has no model.safetensors: serve it with torch")
    from safetensors.numpy import load_file

    state = {k.removeprefix("linear."): v.astype(np.float32) for k, v in load_file(str(weights_file)).items()}
    bias = state.get("bias") if config.get("bias", True) else None
    return state["weight"], bias, activation
