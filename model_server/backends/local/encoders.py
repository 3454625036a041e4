"""The three kinds of local model, as torch code: dense text embeddings, SPLADE sparse
embeddings and cross-encoder rerank scores.

Each model tokenizes on the caller's side (``encode_*``, cheap, gives the lengths the
batcher budgets with) and runs whole batches on the worker's side (``run``: pad,
forward pass, post-processing to plain Python values). Inputs longer than the model's
maximum are truncated, never refused; ``Encoded.truncated`` says so.

- Text embeddings pool and normalise as the model's sentence-transformers files say
  (``modules.json``, ``1_Pooling/config.json``, Dense and Normalize modules), mean
  pooling without normalisation when there are none.
- Sparse embeddings are SPLADE's: ``max over tokens of log(1 + relu(logits))`` from a
  masked-LM head, keyed by token text, special tokens and zeros left out.
- Rerank scores come from a sequence-classification head over (query, document) pairs,
  through the model's activation (sigmoid for one label, as sentence-transformers'
  CrossEncoder does).

Imports torch and transformers: only the local backend's loading path imports it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .inputs import (CHECK_SENTENCES, CPU_PASS_COST_TOKENS, Encoded, balanced_parts, cheapest_slices,
                     length_slices, read_json)
from .runtime import Runtime

log = logging.getLogger(__name__)

_SANE_MAX_LENGTH = 1_000_000  # tokenizers without a limit report ~1e30
# What CUDA graphs must agree with the eager pass to on the check inputs: only the
# padding of a bucket differs, so anything less means the recording went wrong.
GRAPHS_MIN_AGREEMENT = 0.999


def _cosine(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    norms = a.norm() * b.norm()
    if norms == 0:
        return 1.0 if torch.equal(a, b) else 0.0
    return float((a @ b) / norms)


class LocalModel:
    """A tokenizer and a model on a runtime; ``run`` is called from one worker thread only."""

    auto_class: str = "AutoModel"
    # The field of the transformers model's output that ``forward`` reads.
    output_name: str = "last_hidden_state"

    def __init__(self, path: Path, runtime: Runtime) -> None:
        import transformers

        self.path = path
        self.runtime = runtime
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        model_class = getattr(transformers, self.auto_class)
        self.model = model_class.from_pretrained(str(path), dtype=runtime.dtype, attn_implementation=runtime.attention)
        self.model.to(runtime.device).eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.uses_token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        self.max_length = self._max_length()
        self._tokenizer_lock = threading.Lock()
        # CUDA graphs of ``compute`` once recorded. Not ``self.compute`` itself when there are
        # none: a bound method kept on its own object is a reference cycle, and the model's
        # weights would outlive it until Python's next full collection.
        self._graphed: Any = None

    def _max_length(self) -> int:
        limits = []
        tokenizer_max = getattr(self.tokenizer, "model_max_length", None)
        if tokenizer_max and tokenizer_max < _SANE_MAX_LENGTH:
            limits.append(int(tokenizer_max))
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:
            limits.append(int(positions))
        sbert = read_json(self.path / "sentence_bert_config.json")
        if isinstance(sbert, dict) and sbert.get("max_seq_length"):
            limits.append(int(sbert["max_seq_length"]))
        return min(limits) if limits else 512

    # ---- caller's side -------------------------------------------------------------
    # A fast tokenizer keeps its truncation settings in shared state: calls from two threads
    # at once (the event loop, and a thread for large requests) must take turns.
    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        with self._tokenizer_lock:
            return self._encode_texts(texts)

    def encode_pairs(self, query: str, documents: Sequence[str]) -> list[Encoded]:
        with self._tokenizer_lock:
            return self._encode_pairs(query, documents)

    def _encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        full = self.tokenizer(list(texts), truncation=False, verbose=False)
        out = []
        for i, ids in enumerate(full["input_ids"]):
            if len(ids) <= self.max_length:
                types = full["token_type_ids"][i] if self.uses_token_types and "token_type_ids" in full else None
                out.append(Encoded(ids, types))
                continue
            cut = self.tokenizer(texts[i], truncation=True, max_length=self.max_length)
            out.append(Encoded(cut["input_ids"], cut.get("token_type_ids") if self.uses_token_types else None, True))
        return out

    def _encode_pairs(self, query: str, documents: Sequence[str]) -> list[Encoded]:
        enc = self.tokenizer([query] * len(documents), list(documents), truncation=True, max_length=self.max_length)
        types = enc.get("token_type_ids") if self.uses_token_types else None
        return [Encoded(ids, types[i] if types is not None else None) for i, ids in enumerate(enc["input_ids"])]

    # ---- worker's side -------------------------------------------------------------
    def collate(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(item) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        types = torch.zeros((len(items), width), dtype=torch.long) if self.uses_token_types else None
        for row, item in enumerate(items):
            n = len(item)
            ids[row, :n] = torch.tensor(item.input_ids, dtype=torch.long)
            mask[row, :n] = 1
            if types is not None and item.token_type_ids is not None:
                types[row, :n] = torch.tensor(item.token_type_ids, dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            batch["token_type_ids"] = types
        return {k: v.to(self.runtime.device, non_blocking=True) for k, v in batch.items()}

    def run(self, items: Sequence[Encoded]) -> list[Any]:
        """Outputs for ``items`` in their order, computed in length-sorted slices that pad little;
        on a body with lanes (see ``onnx_runtime.OnnxBody``), in parts of equal cost side by side."""
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        outputs: list[Any] = [None] * len(items)
        lanes = getattr(self.model, "lanes", None)
        if lanes is not None and len(items) >= self.model.lane_count:  # see onnx_runtime.OnnxBody
            parts = balanced_parts([len(items[i]) for i in order], self.model.lane_count, CPU_PASS_COST_TOKENS)
            done = list(lanes.map(self._run_in_lane, [[(i, items[i]) for i in order[part]] for part in parts]))
        else:
            with torch.inference_mode():
                done = [self._run_sorted([(i, items[i]) for i in order])]
        for answered in done:
            for index, output in answered:
                outputs[index] = output
        return outputs

    def _run_in_lane(self, indexed: list[tuple[int, Encoded]]) -> list[tuple[int, Any]]:
        with torch.inference_mode():  # a per-thread mode
            return self._run_sorted(indexed)

    def _run_sorted(self, indexed: list[tuple[int, Encoded]]) -> list[tuple[int, Any]]:
        """(index, output) of length-sorted ``indexed`` items, slice by slice."""
        lengths = [len(item) for _, item in indexed]
        slices = length_slices(lengths) if self.runtime.on_gpu else cheapest_slices(lengths, CPU_PASS_COST_TOKENS)
        answered: list[tuple[int, Any]] = []
        for piece in slices:
            chosen = indexed[piece.start:piece.stop]
            answered.extend(zip((i for i, _ in chosen), self.forward(self.collate([item for _, item in chosen]))))
        return answered

    def close(self) -> None:
        """Let go of what the model holds beyond its weights (an ONNX body's lanes, CUDA
        graphs, which hold ``compute`` and so the model itself)."""
        self._graphed = None
        close = getattr(self.model, "close", None)
        if close is not None:
            close()

    def forward(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        graphed = self._graphed
        return self.to_python(graphed(batch) if graphed is not None else self.compute(batch))

    def compute(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """The tensor part of a forward pass: padded inputs to one result row per input."""
        raise NotImplementedError

    def to_python(self, result: torch.Tensor) -> list[Any]:  # pragma: no cover - abstract
        """``compute``'s rows as the plain values the API renders."""
        raise NotImplementedError

    def use_cuda_graphs(self) -> float | None:
        """Replay CUDA graphs of ``compute`` from now on (see ``cuda_graphs``), if they agree
        with the eager pass on the check inputs: their agreement, or ``None`` when they
        cannot be recorded or do not agree, and the model stays eager."""
        from .cuda_graphs import GraphedForward

        items = self.check_items()
        reference = self.run(items)
        graphed = GraphedForward(self.compute, pad_id=self.pad_id, max_length=self.max_length)
        self._graphed = graphed
        candidate = self.run(items)
        if graphed.disabled_reason is not None or not graphed.replays:
            self._graphed = None
            return None
        agreement = self.agreement(reference, candidate)
        if agreement < GRAPHS_MIN_AGREEMENT:
            log.warning("model [%s]: CUDA graphs agree with the eager pass to only %.6f (floor %s); running eagerly",
                        self.path.name, agreement, GRAPHS_MIN_AGREEMENT)
            self._graphed = None
            return None
        return agreement

    def warmup_items(self) -> list[Encoded]:
        return self.encode_texts(["warm-up"])

    def check_items(self) -> list[Encoded]:
        """The inputs another engine is checked against torch on."""
        return self.encode_texts(CHECK_SENTENCES)

    def agreement(self, reference: list[Any], candidate: list[Any]) -> float:
        """How closely ``candidate`` outputs follow ``reference`` ones: the mean cosine."""
        return sum(_cosine(a, b) for a, b in zip(reference, candidate)) / max(1, len(reference))

    def describe(self) -> dict[str, Any]:
        return {}


class TextEmbeddingModel(LocalModel):
    auto_class = "AutoModel"

    def __init__(self, path: Path, runtime: Runtime) -> None:
        super().__init__(path, runtime)
        self.pooling_modes = ["mean"]
        self.normalize = False
        self.dense: list[tuple[torch.nn.Linear, str]] = []
        self.prompts: dict[str, str] = {}
        self._read_sentence_transformers_config()
        self.dimensions = self._dimensions()

    def _read_sentence_transformers_config(self) -> None:
        modules = read_json(self.path / "modules.json")
        if isinstance(modules, list):
            for module in modules:
                kind = str(module.get("type", "")).rsplit(".", 1)[-1]
                folder = self.path / module.get("path", "")
                if kind == "Pooling":
                    self.pooling_modes = _pooling_modes(read_json(folder / "config.json") or {})
                elif kind == "Normalize":
                    self.normalize = True
                elif kind == "Dense":
                    self.dense.append(_load_dense(folder, self.runtime))
        config = read_json(self.path / "config_sentence_transformers.json")
        if isinstance(config, dict) and isinstance(config.get("prompts"), dict):
            self.prompts = {str(k): str(v) for k, v in config["prompts"].items()}

    def _dimensions(self) -> int:
        if self.dense:
            return self.dense[-1][0].out_features
        return int(self.model.config.hidden_size) * len(self.pooling_modes)

    def compute(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"]
        pooled = torch.cat([_pool(mode, hidden, mask) for mode in self.pooling_modes], dim=-1)
        for linear, activation in self.dense:
            pooled = linear(pooled.to(linear.weight.dtype)).float()
            pooled = torch.tanh(pooled) if activation == "tanh" else pooled
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled

    def to_python(self, result: torch.Tensor) -> list[list[float]]:
        return result.cpu().tolist()

    def describe(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}


class SparseEmbeddingModel(LocalModel):
    auto_class = "AutoModelForMaskedLM"
    output_name = "logits"

    def __init__(self, path: Path, runtime: Runtime) -> None:
        super().__init__(path, runtime)
        vocab_size = int(self.model.config.vocab_size)
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(self.tokenizer)))))
        self.vocabulary: list[str | None] = list(tokens) + [None] * (vocab_size - len(tokens))
        # On the model's device: a graph may not copy from the host while it records.
        self.excluded = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=torch.long,
                                     device=runtime.device)

    def agreement(self, reference: list[dict[str, float]], candidate: list[dict[str, float]]) -> float:
        """The mean cosine of the sparse vectors, over the tokens either one weighs."""
        total = 0.0
        for a, b in zip(reference, candidate):
            tokens = sorted(set(a) | set(b))
            total += _cosine([a.get(t, 0.0) for t in tokens], [b.get(t, 0.0) for t in tokens])
        return total / max(1, len(reference))

    def compute(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(**batch).logits.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(logits.dtype)
        weights = (torch.log1p(torch.relu(logits)) * mask).amax(dim=1)
        if len(self.excluded):
            weights[:, self.excluded.to(weights.device)] = 0.0
        return weights

    def to_python(self, result: torch.Tensor) -> list[dict[str, float]]:
        weights = result.cpu()
        out = []
        for row in weights:
            ids = torch.nonzero(row > 0, as_tuple=False).flatten()
            values = row[ids]
            order = torch.argsort(values, descending=True)
            embedding = {}
            for token_id, value in zip(ids[order].tolist(), values[order].tolist()):
                token = self.vocabulary[token_id]
                if token is not None:
                    embedding[token] = value
            out.append(embedding)
        return out


class RerankModel(LocalModel):
    auto_class = "AutoModelForSequenceClassification"
    output_name = "logits"

    def __init__(self, path: Path, runtime: Runtime) -> None:
        super().__init__(path, runtime)
        self.num_labels = int(getattr(self.model.config, "num_labels", 1))
        declared = (getattr(self.model.config, "sentence_transformers", None) or {}).get("activation_fn", "")
        self.activation = "identity" if declared.endswith("Identity") else "sigmoid"

    def compute(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(**batch).logits.float()
        if self.num_labels == 1:
            scores = logits[:, 0]
            scores = torch.sigmoid(scores) if self.activation == "sigmoid" else scores
        else:  # a classifier: the probability of its last ("relevant") label
            scores = torch.softmax(logits, dim=-1)[:, -1]
        return scores

    def to_python(self, result: torch.Tensor) -> list[float]:
        return result.cpu().tolist()

    def warmup_items(self) -> list[Encoded]:
        return self.encode_pairs("warm-up", ["warm-up"])

    def check_items(self) -> list[Encoded]:
        return self.encode_pairs(CHECK_SENTENCES[2], list(CHECK_SENTENCES))

    def agreement(self, reference: list[float], candidate: list[float]) -> float:
        """One score per pair: agreement is one less the largest difference, so a cosine
        floor reads the same way (scores through a sigmoid lie in [0, 1])."""
        return 1.0 - max((abs(a - b) for a, b in zip(reference, candidate)), default=0.0)


def _pooling_modes(config: dict[str, Any]) -> list[str]:
    # The order sentence-transformers concatenates pooled vectors in.
    names = [("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
             ("mean", "pooling_mode_mean_tokens"), ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
             ("weightedmean", "pooling_mode_weightedmean_tokens"), ("lasttoken", "pooling_mode_lasttoken")]
    modes = [mode for mode, key in names if config.get(key)]
    if not modes and isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"].replace("_tokens", "").replace("_token", "")]
    return modes or ["mean"]


def _pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    lengths = weights.sum(dim=1).clamp(min=1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(weights == 0, -1e9).amax(dim=1)
    if mode == "mean":
        return (hidden * weights).sum(dim=1) / lengths
    if mode == "mean_sqrt_len":
        return (hidden * weights).sum(dim=1) / lengths.sqrt()
    if mode == "weightedmean":
        positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
        w = weights * positions.view(1, -1, 1)
        return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)
    if mode == "lasttoken":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unsupported pooling mode [{mode}]")


def _load_dense(folder: Path, runtime: Runtime) -> tuple[torch.nn.Linear, str]:
    config = read_json(folder / "config.json") or {}
    linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    weights_file = folder / "model.safetensors"
    if weights_file.exists():
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    activation = str(config.get("activation_function", "")).rsplit(".", 1)[-1].lower()
    linear.to(runtime.device, runtime.dtype).eval()
    return linear, "tanh" if activation == "tanh" else "identity"

