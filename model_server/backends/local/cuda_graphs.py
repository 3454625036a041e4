"""CUDA graphs of a model's forward pass: one launch per batch instead of one per kernel.

A small encoder such as all-MiniLM-L6-v2 runs a few hundred kernels per forward pass, each
launched from Python with the interpreter lock held. On a GPU that makes the pass cost
about the same for 1 input as for 64, and it starves the event loop that tokenizes and
answers requests. A CUDA graph records the pass once for a padded shape and replays it
with a single launch.

Shapes are bucketed: the batch rounds up to a power of two, the sequence to a multiple of
16 (then of 64 past 128). Each bucket is recorded the first time a batch needs it, into
one memory pool that every graph shares (graphs replay one at a time, on the model's one
worker thread). Padding rows and positions are masked, and the output is cut back to the
batch's own shape, so results match the eager pass within the dtype's rounding; the
backend checks that on its fixed sentences when the model loads.

Recording can fail for a model whose forward pass synchronises with the host (a data-
dependent branch): the runner then logs once and the model runs eagerly from then on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

# Past these, a batch runs eagerly: recording a graph for a rare huge shape costs more
# memory than its launches cost time.
MAX_GRAPH_BATCH = 128
MAX_GRAPH_TOKENS = 65536


def batch_bucket(size: int) -> int:
    bucket = 1
    while bucket < size:
        bucket *= 2
    return bucket


def length_bucket(length: int) -> int:
    step = 16 if length <= 128 else 64
    return -(-length // step) * step


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


class GraphedForward:
    """``forward(batch) -> tensor`` through recorded graphs, eager where none fits.

    ``forward`` is the model's eager computation: a function of the padded inputs
    (``input_ids``, ``attention_mask``, maybe ``token_type_ids``, all ``[batch, length]``)
    to one tensor with a row per input, pooling included, so that padding positions are
    masked inside the graph and only ``[batch, ...]`` results are kept per bucket.
    """

    def __init__(self, forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], *, pad_id: int,
                 max_length: int) -> None:
        self._forward = forward
        self._pad_id = pad_id
        self._max_length = max_length
        self._graphs: dict[tuple[int, int, tuple[str, ...]], _Graph] = {}
        self._pool: Any = None
        self.disabled_reason: str | None = None
        self.replays = 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows, width = batch["input_ids"].shape
        shape = (batch_bucket(rows), min(length_bucket(width), self._max_length))
        if (self.disabled_reason is not None or shape[0] > MAX_GRAPH_BATCH
                or shape[0] * shape[1] > MAX_GRAPH_TOKENS or width > shape[1]):
            return self._forward(batch)
        key = (*shape, tuple(sorted(batch)))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._record(key, batch)
            if graph is None:
                return self._forward(batch)
        for name, static in graph.inputs.items():
            if name == "input_ids":
                static.fill_(self._pad_id)
            else:
                static.zero_()
            static[:rows, :width].copy_(batch[name])
        # A fully masked row would give NaNs in attention: let padding rows see one token.
        graph.inputs["attention_mask"][rows:, 0] = 1
        graph.graph.replay()
        self.replays += 1
        return graph.output[:rows]

    def _record(self, key: tuple[Any, ...], batch: dict[str, torch.Tensor]) -> _Graph | None:
        rows, width = key[0], key[1]
        device = batch["input_ids"].device
        inputs = {name: torch.zeros((rows, width), dtype=tensor.dtype, device=device) for name, tensor in batch.items()}
        inputs["input_ids"].fill_(self._pad_id)
        # One padded position, so that the warm-up takes the masked attention path the
        # recording takes (an all-ones mask lets transformers drop the mask altogether).
        inputs["attention_mask"].fill_(1)
        inputs["attention_mask"][:, -1] = 0
        try:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            # Warm up on a side stream (lazy initialisation, kernel selection), as PyTorch's
            # CUDA graph recipe says, then record on it.
            stream = torch.cuda.Stream(device=device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward(inputs)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                output = self._forward(inputs)
        except Exception as exc:  # the model cannot be recorded: run it eagerly from now on
            self.disabled_reason = f"{type(exc).__name__}: {exc}"
            log.warning("CUDA graphs are off for this model, it runs eagerly: %s", self.disabled_reason)
            try:
                torch.cuda.synchronize(device)
            except RuntimeError:
                pass
            return None
        recorded = _Graph(graph, inputs, output)
        self._graphs[key] = recorded
        log.debug("recorded a CUDA graph for %d x %d", rows, width)
        return recorded
