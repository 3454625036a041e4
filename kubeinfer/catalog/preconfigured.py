"""Elasticsearch 9's preconfigured inference endpoints: one per built-in model, present
without a create call and reserved (no endpoint may be created under their ids).

Pure data: the ids and the create bodies Elasticsearch uses for them (adaptive
allocations from 0 to 32, one thread). Whoever serves endpoints decides when to start
one; this module knows no server.
"""

from __future__ import annotations

from typing import Any

_ALLOCATIONS = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}


def _body(model_id: str, **task_settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": "elasticsearch",
        "service_settings": {"num_threads": 1, "model_id": model_id, "adaptive_allocations": dict(_ALLOCATIONS)},
    }
    if task_settings:
        body["task_settings"] = task_settings
    return body


# inference id -> (task type, create body)
PRECONFIGURED: dict[str, tuple[str, dict[str, Any]]] = {
    ".elser-2-elasticsearch": ("sparse_embedding", _body(".elser_model_2")),
    ".multilingual-e5-small-elasticsearch": ("text_embedding", _body(".multilingual-e5-small")),
    ".rerank-v1-elasticsearch": ("rerank", _body(".rerank-v1", return_documents=True)),
}


def is_reserved(inference_id: str) -> bool:
    return inference_id in PRECONFIGURED


def reserved_id_error_reason(inference_id: str) -> str:
    return (f"[{inference_id}] is a reserved inference ID. "
            "Cannot create a new inference endpoint with a reserved ID.")
