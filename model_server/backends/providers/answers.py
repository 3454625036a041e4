"""Typed inference results, built from values read out of provider answers.

The builders give the backends' results (``TextEmbeddings``, ``SparseEmbeddings``,
``Ranking``, ``Completions`` and streamed ``CompletionDelta`` values); the checks raise
``ValueError`` for a value of the wrong kind, which ``ProviderBackend.translate`` turns
into a 502. Pure functions; no I/O, and no wire format: ``model_server.api`` renders.
"""

from __future__ import annotations

from typing import Any

from ..results import (
    CompletionDelta, Completions, Embeddings, RankedDocument, Ranking, SparseEmbedding, SparseEmbeddings, TextEmbeddings,
)


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


def text_embeddings(vectors: list[list[float]]) -> TextEmbeddings:
    return TextEmbeddings(vectors)


def byte_embeddings(vectors: list[list[int]]) -> TextEmbeddings:
    return TextEmbeddings(vectors, "byte")


def bit_embeddings(vectors: list[list[int]]) -> TextEmbeddings:
    """Packed bits, eight dimensions a byte (Elasticsearch's ``text_embedding_bits``)."""
    return TextEmbeddings([byte_vector(v) for v in vectors], "bit")


def embeddings(vectors: list[list[float]]) -> Embeddings:
    """The ``embedding`` task's answer."""
    return Embeddings(vectors)


def sparse_embeddings(weights: list[dict[str, float]]) -> SparseEmbeddings:
    return SparseEmbeddings([SparseEmbedding(w) for w in weights])


def completions(texts: list[str]) -> Completions:
    return Completions(texts)


def delta(text: str) -> CompletionDelta:
    return CompletionDelta(text)


def rerank_results(scored: list[tuple[int, float, str | None]], top_n: int | None = None) -> Ranking:
    """Best first, each with the input's index, its score, and the text if known."""
    ordered = sorted(scored, key=lambda s: s[1], reverse=True)
    if top_n:
        ordered = ordered[:top_n]
    return Ranking([RankedDocument(int(index), _number(score), text) for index, score, text in ordered])


def scores_as_asked(
    scored: list[tuple[int, float]], documents: list[str], *, return_text: bool, top_n: int | None
) -> Ranking:
    """The ranking of a provider that answers scores only and takes no ``top_n`` or
    ``return_documents``: cut to ``top_n`` and given the inputs' texts here, as asked."""
    for index, _ in scored:
        if not 0 <= index < len(documents):
            raise ValueError(f"result index [{index}] is out of range")
    return rerank_results([(i, score, documents[i] if return_text else None) for i, score in scored], top_n)


def parse_results_rerank(answer: dict[str, Any], documents: list[str], return_documents: bool) -> Ranking:
    """The ``{"results": [{"index", "relevance_score", "document"?}]}`` rerank answer that
    Cohere made common (Jina AI, Azure AI Studio, vLLM and other OpenAI-compatible servers
    speak it): the document's text when asked for, the input's own where the answer
    leaves it out."""
    scored = []
    for item in answer["results"]:
        index = int(item["index"])
        if not 0 <= index < len(documents):
            raise ValueError(f"result index [{index}] is out of range")
        text = None
        if return_documents:
            document = item.get("document")
            text = document.get("text") if isinstance(document, dict) else document
            text = documents[index] if text is None else text
        scored.append((index, item["relevance_score"], text))
    return rerank_results(scored)
