"""What a backend answers: small typed values, free of any wire format.

A backend returns one of these from ``infer`` (and yields ``CompletionDelta`` values from
``stream``); ``model_server.api`` alone turns them into Elasticsearch's JSON, and any
other protocol is another renderer of the same values. Nothing here knows HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

# Elasticsearch's element types of a dense vector: floats, signed bytes, packed bits.
ElementType = Literal["float", "byte", "bit"]


@dataclass(frozen=True, slots=True)
class TextEmbeddings:
    """One dense vector per input, in input order."""

    vectors: list[list[float]] | list[list[int]]
    element_type: ElementType = "float"

    @property
    def dimensions(self) -> int | None:
        return len(self.vectors[0]) if self.vectors else None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The ``embedding`` task's answer: one dense vector per input, in input order."""

    vectors: list[list[float]]

    @property
    def dimensions(self) -> int | None:
        return len(self.vectors[0]) if self.vectors else None


@dataclass(frozen=True, slots=True)
class SparseEmbedding:
    weights: dict[str, float]
    is_truncated: bool = False


@dataclass(frozen=True, slots=True)
class SparseEmbeddings:
    """One token-weight map per input, in input order."""

    embeddings: list[SparseEmbedding]


@dataclass(frozen=True, slots=True)
class RankedDocument:
    index: int
    relevance_score: float
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Ranking:
    """Documents best first, each with its index in the request's input."""

    documents: list[RankedDocument]


@dataclass(frozen=True, slots=True)
class Completions:
    """One generated text per input."""

    texts: list[str]


@dataclass(frozen=True, slots=True)
class CompletionDelta:
    """A piece of a streamed completion."""

    text: str


InferenceResult = Union[TextEmbeddings, Embeddings, SparseEmbeddings, Ranking, Completions]


def count_mismatch(result: InferenceResult, inputs: int) -> str | None:
    """What is wrong with the number of results for ``inputs`` inputs, or None: one vector
    per input, no more ranked documents than documents (each an index into them), no more
    completions than inputs. A backend's answer that breaks it is not to be passed on."""
    if isinstance(result, (TextEmbeddings, Embeddings)):
        count = len(result.vectors)
    elif isinstance(result, SparseEmbeddings):
        count = len(result.embeddings)
    elif isinstance(result, Ranking):
        if len(result.documents) > inputs or any(not 0 <= d.index < inputs for d in result.documents):
            return f"{len(result.documents)} ranked documents for {inputs} documents"
        return None
    else:
        if len(result.texts) > max(inputs, 1):
            return f"{len(result.texts)} completions for {inputs} inputs"
        return None
    return None if count == inputs else f"{count} results for {inputs} inputs"
