"""Read-only views of the endpoints a store holds: Elasticsearch's get inference API.

``GET /_inference``, ``/_inference/_all``, ``/_inference/{inference_id}``,
``/_inference/{task_type}/_all`` and ``/_inference/{task_type}/{inference_id}``
answer ``{"endpoints": [...]}`` with secrets left out. Creating and deleting
endpoints is the gateway's business, not this module's.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from kubeinfer.catalog import InferenceEndpointConfig
from .errors import ElasticsearchJSONResponse
from .inference import check_task_type, path_task_type
from .store import EndpointStore


def _endpoints(configs: list[InferenceEndpointConfig]) -> Response:
    return ElasticsearchJSONResponse({"endpoints": [c.es_view() for c in configs]})


def endpoints_router(store: EndpointStore) -> APIRouter:
    router = APIRouter()

    @router.get("/_inference")
    @router.get("/_inference/_all")
    async def get_all() -> Response:
        return _endpoints(await store.list())

    @router.get("/_inference/{task_type}/_all")
    async def get_all_of_task_type(task_type: str) -> Response:
        task = path_task_type(task_type)
        return _endpoints([c for c in await store.list() if c.task_type is task])

    @router.get("/_inference/{inference_id}")
    async def get_one(inference_id: str) -> Response:
        return _endpoints([await store.get(inference_id)])

    @router.get("/_inference/{task_type}/{inference_id}")
    async def get_one_of_task_type(task_type: str, inference_id: str) -> Response:
        task = path_task_type(task_type)
        config = await store.get(inference_id)
        check_task_type(task, config)
        return _endpoints([config])

    return router
