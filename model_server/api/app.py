"""The FastAPI application shared by ``kubeinfer serve``, the gateway and local mode.

``create_app`` wires the inference routes (Elasticsearch's and OpenAI's) over an
``EndpointStore``, the probes, the
metrics and Elasticsearch-shaped error handling; callers add their own routers (the
gateway's create, update and delete) and lifespan. Every app answers Elasticsearch's
GET of endpoints from its store.
"""

from __future__ import annotations

import gc
from contextlib import AbstractAsyncContextManager
from typing import Any, Callable, Iterable

from fastapi import APIRouter, FastAPI

from .chat_completion import chat_completion_router
from .endpoints import endpoints_router
from .errors import install_error_handlers
from .health import health_router
from .inference import inference_route
from .openai_api import openai_router
from .relay import Relay
from .services import services_router
from .store import EndpointStore


def create_app(
    store: EndpointStore,
    *,
    extra_routers: Iterable[APIRouter] = (),
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    readiness: Callable[[], bool] | None = None,
    title: str = "kubeinfer",
    relay: Relay | None = None,
) -> FastAPI:
    """The HTTP app. ``readiness`` backs ``/readyz``; by default the store's ``ready``. ``relay``
    hands inference for the backends it takes on as bytes (see ``relay``)."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    if readiness is None:
        def readiness() -> bool:
            return store.ready
    # Inference is the hot path and every request walks the routes in order: its one route
    # comes first (it leaves chat completion's `_stream` path to chat completion's routes).
    # It and chat completion's take POSTs only, so the GET, PUT and DELETE routes below keep
    # their literal paths (`_all`, `_services`) ahead of `{inference_id}`.
    app.router.routes.append(inference_route(store, relay=relay))
    app.include_router(chat_completion_router(store, relay))
    app.include_router(health_router(readiness))
    for router in extra_routers:
        app.include_router(router)
    app.include_router(services_router())
    app.include_router(endpoints_router(store))
    # OpenAI's API over the same endpoints.
    app.include_router(openai_router(store, relay))
    app.state.store = store
    return app


def freeze_startup_objects() -> None:
    """Leave what exists now (imported modules, a loaded model's objects) out of every later
    garbage collection. Python's full collections walk every tracked object: in a serving
    process holding the objects of FastAPI, httpx, transformers and torch each took about
    60 ms, a stall of every request in flight, several times in ten seconds under load.
    Call it once a server has started, not in a process that keeps creating apps."""
    gc.freeze()
