"""Probes and metrics: ``/healthz`` (the process answers), ``/readyz`` (the endpoint can
serve: model loaded and warmed up) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter
from starlette.responses import Response

from .errors import ElasticsearchJSONResponse
from .metrics import exposition


def health_router(readiness: Callable[[], bool]) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        return ElasticsearchJSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz() -> Response:
        if readiness():
            return ElasticsearchJSONResponse({"status": "ready"})
        return ElasticsearchJSONResponse({"status": "not_ready"}, status_code=503)

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return router
