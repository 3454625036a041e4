"""What the local models of every engine share, with neither torch nor numpy: tokenized
inputs (``Encoded``), the sentences another engine is checked on, and how a batch of
sorted lengths is cut into forward passes (slices) and into side-by-side parts (lanes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# On a GPU a batch runs as length-sorted slices of at least this many padded tokens, each
# padded to at most this share: the fixed cost of a forward pass against the cost of padding.
MIN_SLICE_TOKENS = 256
MAX_SLICE_PADDING = 0.10
# On CPU a forward pass costs little beyond its tokens: about as much as this many padded
# tokens of all-MiniLM-L6-v2 on one thread, on ONNX Runtime as on torch. Slices are then
# cut where they cost least; on batches of 32 sentences this took 6% off both engines' time
# against the GPU's rule.
CPU_PASS_COST_TOKENS = 32
# What another engine's outputs are checked against torch's on, when a model loads: short
# and long, plain and odd, so that padding and truncation are exercised too.
CHECK_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "What is the weather like in Paris tomorrow?",
    "hello",
    "Vectors capture meaning beyond exact keywords, so similar questions find similar answers "
    "across languages, products, reviews, weather, sports, music, travel and food.",
    "Search engines return relevant documents for every query users type into the box.",
    "A cat sat on the mat; dogs run fast in the rain.",
    "1234 5678 #tags @names e-mail: someone@example.com",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "The cluster indexes new pages each minute " * 12,
)


@dataclass(frozen=True)
class Encoded:
    """One tokenized input (or query-document pair)."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None



def length_slices(lengths: list[int], min_tokens: int = MIN_SLICE_TOKENS,
                   max_padding: float = MAX_SLICE_PADDING) -> list[range]:
    """Split ascending ``lengths`` into consecutive slices: a slice closes once it holds
    ``min_tokens`` padded tokens and the next item would raise its padding share above
    ``max_padding``. Each forward pass costs a fixed overhead, so tiny slices are not worth it."""
    slices, start, real = [], 0, 0
    for i, length in enumerate(lengths):
        width = length  # ascending: the newest item is the widest
        padded = width * (i - start + 1)
        if i > start and (width * (i - start)) >= min_tokens and 1 - (real + length) / padded > max_padding:
            slices.append(range(start, i))
            start, real = i, 0
        real += length
    slices.append(range(start, len(lengths)))
    return slices


def balanced_parts(lengths: list[int], parts: int, pass_cost: int) -> list[slice]:
    """Split ascending ``lengths`` into at most ``parts`` consecutive parts whose largest cost
    (``pass_cost`` plus width times size, as in ``cheapest_slices``) is least: the work of
    side-by-side lanes, all done when the slowest is."""
    n = len(lengths)
    parts = max(1, min(parts, n))

    def cost(start: int, end: int) -> int:
        return pass_cost + lengths[end - 1] * (end - start)

    # slowest[j]: the least largest cost of the first j lengths in k parts; starts[k][j]: where
    # the last of those parts starts.
    slowest = [0] + [cost(0, j) for j in range(1, n + 1)]
    starts = [[0] * (n + 1)]
    for _ in range(1, parts):
        # A part may stay empty (it starts where it ends): more lanes are not always faster.
        row, where = slowest[:], list(range(n + 1))
        for j in range(2, n + 1):
            row[j], where[j] = min([(slowest[j], j)] + [(max(slowest[i], cost(i, j)), i) for i in range(1, j)])
        slowest = row
        starts.append(where)
    bounds, end = [], n
    for where in reversed(starts):
        start = where[end]
        if end > start:
            bounds.append(slice(start, end))
        end = start
    return bounds[::-1]


def cheapest_slices(lengths: list[int], pass_cost: int) -> list[range]:
    """Split ascending ``lengths`` into consecutive slices of least total cost, a slice
    costing ``pass_cost`` plus its padded tokens (its width times its size). A slice only
    ends where the length changes, so this looks at distinct lengths alone: a few dozen."""
    ends = [i + 1 for i in range(len(lengths)) if i + 1 == len(lengths) or lengths[i + 1] != lengths[i]]
    best, cut = [0] + [0] * len(ends), [0] * (len(ends) + 1)
    starts = [0] + ends
    for k in range(1, len(starts)):
        end, width = starts[k], lengths[starts[k] - 1]
        best[k], cut[k] = min((best[j] + pass_cost + width * (end - starts[j]), j) for j in range(k))
    slices, k = [], len(ends)
    while k > 0:
        slices.append(range(starts[cut[k]], starts[k]))
        k = cut[k]
    return slices[::-1]
