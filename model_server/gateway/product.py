"""The root document (``GET /``) Elasticsearch answers, which clients and tools read.

Kibana, Logstash, Beats and some clients read the version from it before anything
else; the official clients also check ``X-Elastic-Product: Elasticsearch``, which the
API layer's middleware puts on every response.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

# The Elasticsearch version whose inference API kubeinfer answers; 9.x clients accept it.
COMPATIBLE_VERSION = "9.1.0"
LUCENE_VERSION = "10.2.2"


def root_document(name: str, cluster_name: str, cluster_uuid: str) -> dict[str, Any]:
    return {
        "name": name,
        "cluster_name": cluster_name,
        "cluster_uuid": cluster_uuid,
        "version": {
            "number": COMPATIBLE_VERSION,
            "build_flavor": "default",
            "build_type": "kubeinfer",
            "build_hash": "kubeinfer",
            "build_date": "2025-07-01T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": LUCENE_VERSION,
            "minimum_wire_compatibility_version": "8.19.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    }


def root_router(name: str = "kubeinfer", cluster_name: str = "kubeinfer") -> APIRouter:
    """``GET /`` and ``HEAD /`` as Elasticsearch answers them."""
    router = APIRouter()
    document = root_document(name, cluster_name, uuid.uuid5(uuid.NAMESPACE_DNS, cluster_name).hex[:22])

    @router.get("/")
    async def root() -> dict[str, Any]:
        return document

    @router.head("/")
    async def root_head() -> Response:
        return Response(status_code=200)

    return router
