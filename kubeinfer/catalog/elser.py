"""ELSER, Elasticsearch's sparse retrieval model (served by an open SPLADE model)."""

from __future__ import annotations

from ._base import ServiceSpec, TaskType
from .elasticsearch import ElserServiceSettings

SPEC = ServiceSpec(
    name="elser",
    label="Elser",
    service_settings={TaskType.SPARSE_EMBEDDING: ElserServiceSettings},
    description="ELSER sparse embeddings (deprecated in Elasticsearch in favour of the elasticsearch service).",
)
