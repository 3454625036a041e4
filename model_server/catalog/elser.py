"""ELSER, Elasticsearch's sparse retrieval model (served by an open SPLADE model)."""

from __future__ import annotations

from ._base import LOCAL_BACKEND, ServiceSpec, TaskType
from .elasticsearch import ElserServiceSettings

SPEC = ServiceSpec(
    name="elser",
    service_settings={TaskType.SPARSE_EMBEDDING: ElserServiceSettings},
    backend=LOCAL_BACKEND,
    description="ELSER sparse embeddings (deprecated in Elasticsearch in favour of the elasticsearch service).",
)
