"""Probes and metrics: ``/healthz`` (the process answers), ``/readyz`` (the endpoint can
serve: model loaded and warmed up; ``/readyz?model=<inference id>``: that endpoint's
model, where a server holds several: ``state`` ``loading`` or ``failed`` when it is not
ready) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter
from starlette.responses import Response

from .errors import ElasticsearchJSONResponse
from .metrics import exposition


def health_router(readiness: Callable[[], bool], model_readiness: Callable[[str], Any] | None = None) -> APIRouter:
    """``model_readiness(inference_id)`` gives a model's state (``ready``, ``reason``), None
    for an endpoint the server does not serve; without it, every model is the server's."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        return ElasticsearchJSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz(model: str | None = None) -> Response:
        if model is not None and model_readiness is not None:
            state = model_readiness(model)
            if state is None:
                return ElasticsearchJSONResponse({"status": "not_found", "model": model}, status_code=404)
            if state.ready:
                return ElasticsearchJSONResponse({"status": "ready", "model": model})
            # ``state`` tells a model still loading from one that failed (the operator's Ready reads it).
            return ElasticsearchJSONResponse({"status": "not_ready", "model": model, "reason": state.reason,
                                              "state": "loading" if getattr(state, "loading", False) else "failed"},
                                             status_code=503)
        if readiness():
            return ElasticsearchJSONResponse({"status": "ready"})
        return ElasticsearchJSONResponse({"status": "not_ready"}, status_code=503)

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return router
