"""Elasticsearch's inference answers, built from values read out of provider answers.

The builders give the response bodies (``text_embedding``, ``text_embedding_bytes``,
``rerank``, ``completion`` and streamed ``delta`` chunks); the checks raise ``ValueError``
for a value of the wrong kind, which ``ProviderBackend.translate`` turns into a 502.
Pure functions; no I/O.
"""

from __future__ import annotations

from typing import Any


def float_vector(values: Any) -> list[float]:
    """A list of numbers, or a ValueError/TypeError for anything else."""
    if not isinstance(values, list) or not values:
        raise ValueError("an embedding is not a non-empty list of numbers")
    return [_number(v) for v in values]


def byte_vector(values: Any) -> list[int]:
    if not isinstance(values, list) or not values:
        raise ValueError("an embedding is not a non-empty list of integers")
    out = [int(_number(v)) for v in values]
    if any(not -128 <= v <= 255 for v in out):
        raise ValueError("a byte embedding holds values outside [-128, 255]")
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got [{str(value)[:40]}]")
    return float(value)


def expect_count(items: list, count: int, what: str) -> list:
    if not isinstance(items, list):
        raise ValueError(f"[{what}] is not a list")
    if len(items) != count:
        raise ValueError(f"expected {count} {what}, got {len(items)}")
    return items


def text_embeddings(vectors: list[list[float]]) -> dict[str, Any]:
    return {"text_embedding": [{"embedding": v} for v in vectors]}


def byte_embeddings(vectors: list[list[int]]) -> dict[str, Any]:
    return {"text_embedding_bytes": [{"embedding": byte_vector(v)} for v in vectors]}


def bit_embeddings(vectors: list[list[int]], key: str = "text_embedding_bits") -> dict[str, Any]:
    """Packed bits, eight dimensions a byte: ``text_embedding_bits`` (``embeddings_bits``
    for the ``embedding`` task)."""
    return {key: [{"embedding": byte_vector(v)} for v in vectors]}


def sparse_embeddings(weights: list[dict[str, float]]) -> dict[str, Any]:
    """One ``{token: weight}`` map per input."""
    out = []
    for tokens in weights:
        if not isinstance(tokens, dict):
            raise ValueError("a sparse embedding is not a map of tokens to weights")
        out.append({"is_truncated": False, "embedding": {str(k): _number(v) for k, v in tokens.items()}})
    return {"sparse_embedding": out}


def embeddings(vectors: list[list[float]]) -> dict[str, Any]:
    """The ``embedding`` task's answer."""
    return {"embeddings": [{"embedding": v} for v in vectors]}


def completions(texts: list[str]) -> dict[str, Any]:
    return {"completion": [{"result": t} for t in texts]}


def delta(text: str) -> dict[str, Any]:
    return {"completion": [{"delta": text}]}


def rerank_results(scored: list[tuple[int, float, str | None]], top_n: int | None = None) -> dict[str, Any]:
    """ES's rerank: best first, each with the input's index, its score, and the text if known."""
    ordered = sorted(scored, key=lambda s: s[1], reverse=True)
    if top_n:
        ordered = ordered[:top_n]
    out = []
    for index, score, text in ordered:
        item: dict[str, Any] = {"index": int(index), "relevance_score": _number(score)}
        if text is not None:
            item["text"] = text
        out.append(item)
    return {"rerank": out}
