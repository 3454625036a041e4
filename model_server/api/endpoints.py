"""Read-only views of the endpoints a store holds: Elasticsearch's get inference API,
the one implementation behind ``kubeinfer serve``, the gateway and local mode.

``GET /_inference``, ``/_inference/_all``, ``/_inference/{inference_id}``,
``/_inference/{task_type}/_all`` and ``/_inference/{task_type}/{inference_id}``
answer ``{"endpoints": [...]}`` sorted by inference id, secrets left out; the task type
in a path is read as Elasticsearch reads it (any case). Creating and deleting endpoints
is the gateway's business, not this module's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from kubeinfer.catalog import InferenceEndpointConfig, check_task_type, parse_task_type
from .errors import ElasticsearchJSONResponse
from .inference import endpoint_path
from .store import EndpointStore

ALL = "_all"


def _endpoints(configs: list[InferenceEndpointConfig]) -> Response:
    ordered = sorted(configs, key=lambda c: c.inference_id)
    return ElasticsearchJSONResponse({"endpoints": [c.es_view() for c in ordered]})


def endpoints_router(store: EndpointStore) -> APIRouter:
    router = APIRouter()

    async def get_endpoints(task_type: str | None, inference_id: str) -> Response:
        requested = parse_task_type(task_type) if task_type is not None else None
        if inference_id == ALL:
            return _endpoints([c for c in await store.list() if requested in (None, c.task_type)])
        config = await store.get(inference_id)
        check_task_type(config, requested)
        return _endpoints([config])

    async def get_all(request: Request) -> Response:
        return await get_endpoints(None, ALL)

    async def get_by_endpoint(request: Request) -> Response:
        return await get_endpoints(*endpoint_path(request.path_params["endpoint"]))

    router.add_route("/_inference", get_all, methods=["GET"])
    # `<inference_id>` and `<task_type>/<inference_id>` alike, `_all` included.
    router.add_route("/_inference/{endpoint:endpoint}", get_by_endpoint, methods=["GET"])

    return router
