"""Errors as values, in Elasticsearch's vocabulary.

Raised anywhere below the HTTP edge; rendered once, by the API layer, into the
body Elasticsearch sends: ``{"error": {"root_cause": [...], "type", "reason"}, "status"}``.
This module knows nothing of HTTP frameworks.
"""

from __future__ import annotations

from typing import Any


class ElasticsearchError(Exception):
    """An error with an HTTP status, an Elasticsearch error type and a human reason."""

    def __init__(self, status: int, type: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type
        self.reason = reason

    def to_body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [dict(cause)], **cause}, "status": self.status}

    def __repr__(self) -> str:
        return f"ElasticsearchError(status={self.status}, type={self.type!r}, reason={self.reason!r})"


def status_exception(reason: str, status: int = 400) -> ElasticsearchError:
    return ElasticsearchError(status, "status_exception", reason)


def validation_exception(*problems: str) -> ElasticsearchError:
    """Elasticsearch's numbered list: ``Validation Failed: 1: first;2: second;``."""
    listed = "".join(f"{i}: {p};" for i, p in enumerate(problems, start=1))
    return ElasticsearchError(400, "validation_exception", f"Validation Failed: {listed}")


def not_found(inference_id: str) -> ElasticsearchError:
    return ElasticsearchError(
        404, "resource_not_found_exception", f"Inference endpoint not found [{inference_id}]"
    )
