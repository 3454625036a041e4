"""Elasticsearch's get inference services API: ``GET /_inference/_services`` and
``/_inference/_services/{task_type}`` answer the list of services (those supporting the
task type) with their task types and configuration fields, as Kibana reads them.

The answer comes from the catalog alone; no store, no backend.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from kubeinfer.catalog import parse_task_type
from kubeinfer.catalog.configuration import services_configurations
from .errors import ElasticsearchJSONResponse


def services_router() -> APIRouter:
    router = APIRouter()

    @router.get("/_inference/_services")
    async def get_services() -> Response:
        return ElasticsearchJSONResponse(services_configurations())

    @router.get("/_inference/_services/{task_type}")
    async def get_services_of_task_type(task_type: str) -> Response:
        return ElasticsearchJSONResponse(services_configurations(parse_task_type(task_type)))

    return router
