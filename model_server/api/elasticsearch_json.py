"""Elasticsearch's inference response bodies, written from the backends' typed results.

The one place that knows Elasticsearch's result shapes (``text_embedding``,
``text_embedding_bytes``, ``text_embedding_bits``, ``embeddings``, ``sparse_embedding``, ``rerank``,
``completion`` and streamed ``delta`` chunks). Nothing reads them back: the gateway hands
an endpoint pod's answer on as bytes.
"""

from __future__ import annotations

from typing import Any

from ..backends.results import (
    CompletionDelta, Completions, Embeddings, InferenceResult, RankedDocument, Ranking, SparseEmbeddings,
    TextEmbeddings,
)

_EMBEDDING_KEYS = {"float": "text_embedding", "byte": "text_embedding_bytes", "bit": "text_embedding_bits"}
_ELEMENT_TYPES = {key: element for element, key in _EMBEDDING_KEYS.items()}


def render(result: InferenceResult) -> dict[str, Any]:
    """The body of ``POST /_inference/...`` for ``result``."""
    if isinstance(result, TextEmbeddings):
        return {_EMBEDDING_KEYS[result.element_type]: [{"embedding": v} for v in result.vectors]}
    if isinstance(result, Embeddings):
        return {"embeddings": [{"embedding": v} for v in result.vectors]}
    if isinstance(result, SparseEmbeddings):
        return {"sparse_embedding": [
            {"is_truncated": e.is_truncated, "embedding": e.weights} for e in result.embeddings
        ]}
    if isinstance(result, Ranking):
        return {"rerank": [_ranked(d) for d in result.documents]}
    if isinstance(result, Completions):
        return {"completion": [{"result": t} for t in result.texts]}
    raise TypeError(f"not an inference result: {type(result).__name__}")


def render_delta(delta: CompletionDelta) -> dict[str, Any]:
    """One streamed chunk: ``{"completion": [{"delta": ...}]}``."""
    return {"completion": [{"delta": delta.text}]}


def _ranked(document: RankedDocument) -> dict[str, Any]:
    item: dict[str, Any] = {"index": document.index, "relevance_score": document.relevance_score}
    if document.text is not None:
        item["text"] = document.text
    return item
