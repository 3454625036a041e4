"""Elasticsearch's inference management API: create, update and delete endpoints.

Paths, parameters, bodies and errors follow Elasticsearch's REST API. The routes call a
``ManagedEndpointStore`` and raise ``ElasticsearchError``; the app's error handlers
render it. Inference itself (``POST``) and the GET of endpoints are the API layer's.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import APIRouter, Request

from ..api.request_body import read_json_body
from ..api.inference import endpoint_path
from ..api.inference_request import parse_boolean_flag, parse_time_value
from kubeinfer.catalog import InferenceEndpointConfig, check_task_type, parse_endpoint, parse_task_type
from kubeinfer.errors import ElasticsearchError, status_exception
from .store import ManagedEndpointStore, cannot_update, merge_update, resolve_task_type


# Called with the request, the endpoint to store and the one it replaces (None on create);
# raises when the caller may not store it (in a cluster: Secrets it may not read).
ReferenceCheck = Callable[[Request, InferenceEndpointConfig, InferenceEndpointConfig | None], Awaitable[None]]


def management_router(store: ManagedEndpointStore, *, check_references: ReferenceCheck | None = None) -> APIRouter:
    """The create, update, get and delete routes over ``store``."""
    router = APIRouter()

    async def put_endpoint(request: Request, inference_id: str, task_type: str | None) -> dict[str, Any]:
        timeout = parse_time_value(request.query_params.get("timeout"))
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise ElasticsearchError(400, "parse_exception", "request body must be an object")
        task = resolve_task_type(task_type, body.get("task_type"))
        config = parse_endpoint(inference_id, task, body)
        if check_references is not None:
            await check_references(request, config, None)
        created = await store.create(config, timeout=timeout)
        return created.es_view()

    async def update_endpoint(request: Request, inference_id: str, task_type: str | None) -> dict[str, Any]:
        timeout = parse_time_value(request.query_params.get("timeout"))
        body = await read_json_body(request)
        requested = parse_task_type(task_type) if task_type is not None else None
        try:
            existing = await store.get(inference_id)
        except ElasticsearchError as exc:
            if exc.status == 404:
                raise cannot_update(inference_id) from None
            raise
        if requested is not None and requested != existing.task_type:
            raise status_exception("Task type must match the task type of the existing endpoint")
        merged = merge_update(existing, body)
        if check_references is not None:
            await check_references(request, merged, existing)
        updated = await store.update(merged, timeout=timeout)
        return updated.es_view()

    async def delete_endpoint(request: Request, inference_id: str, task_type: str | None) -> dict[str, Any]:
        requested = parse_task_type(task_type) if task_type is not None else None
        config = await store.get(inference_id)
        check_task_type(config, requested)
        dry_run = parse_boolean_flag(request.query_params.get("dry_run"))
        if not dry_run:
            await store.delete(inference_id)
        # No ingest pipelines or indices live here to reference an endpoint.
        return {"acknowledged": not dry_run, "pipelines": [], "indexes": []}

    def by_endpoint(handler: Callable[[Request, str, str | None], Awaitable[dict[str, Any]]]) -> Any:
        async def route(request: Request) -> dict[str, Any]:
            task_type, inference_id = endpoint_path(request.path_params["endpoint"])
            return await handler(request, inference_id, task_type)
        return route

    # Each route once, for `<inference_id>` and `<task_type>/<inference_id>` alike; `_update`
    # first, since `{endpoint}` alone would take `<inference_id>/_update` for a pair.
    router.add_api_route("/_inference/{endpoint:endpoint}/_update", by_endpoint(update_endpoint), methods=["PUT"])
    router.add_api_route("/_inference/{endpoint:endpoint}", by_endpoint(put_endpoint), methods=["PUT"])
    router.add_api_route("/_inference/{endpoint:endpoint}", by_endpoint(delete_endpoint), methods=["DELETE"])
    return router
