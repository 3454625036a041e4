"""The gateway's HTTP app: the API layer's inference routes plus the management API
and Elasticsearch's root document, over any ``ManagedEndpointStore``.

Local mode and ``kubeinfer gateway`` both build their app here; only the store (and,
in a cluster, the authorization in front) differs.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI

from ..api.app import create_app
from .management import ReferenceCheck, management_router
from .preconfigured import WithPreconfiguredEndpoints
from .product import root_router
from .forwarding import EndpointRelay
from .region_policy import CallerName, FileRegionPolicy, RegionPolicyHolder, WithRegionPolicy, local_user, \
    region_policy_router
from .store import ManagedEndpointStore


def create_gateway_app(
    store: ManagedEndpointStore,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    name: str = "kubeinfer",
    check_references: ReferenceCheck | None = None,
    region_policy: RegionPolicyHolder | None = None,
    caller: CallerName = local_user,
) -> FastAPI:
    """Elasticsearch's whole inference API over ``store``, with Elasticsearch's preconfigured
    endpoints; ``check_references`` vets what a create or update references (in a cluster:
    the Secrets its caller may read); ``region_policy`` keeps the inference region policy
    (none kept across restarts when not given), which every endpoint is held to. Inference
    for an endpoint served by its own server is relayed to it as bytes by the app's one
    ``EndpointRelay``, closed with the app."""
    region_policy = region_policy if region_policy is not None else FileRegionPolicy(None)
    store = WithPreconfiguredEndpoints(WithRegionPolicy(store, region_policy))
    relay = EndpointRelay()

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[Any]:
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            await relay.close()

    app = create_app(
        store,
        extra_routers=[root_router(name=name), region_policy_router(store, region_policy, caller=caller),
                       management_router(store, check_references=check_references)],
        lifespan=serving,
        title=name,
        relay=relay,
    )
    app.state.relay = relay
    return app
