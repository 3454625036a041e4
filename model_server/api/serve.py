"""``kubeinfer serve``: one inference endpoint in one process, what every endpoint pod runs.

With ``--pool`` the file holds any number of endpoints (a pool's ConfigMap, or an endpoint
and those on its deployment) and is followed: endpoints added or removed there load or
unload their models in the running process (``pool``).

Reads the InferenceEndpoint manifest (the same YAML a user applies), resolves its
``secretKeyRef`` settings from the environment or mounted Secret files, builds the
backend the catalog names and serves the API with uvicorn. The backend starts (model
loaded, warm-up run) in the background: ``/healthz`` answers at once, ``/readyz`` only
once the backend is ready. A backend that cannot start stops the process with a
non-zero exit code and the reason in the log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import yaml
from fastapi import FastAPI

from kubeinfer import catalog
from ..backends.base import Backend
from ..backends.registry import create_backend, serves_locally
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError, validation_exception
from kubeinfer.resource import KIND
from kubeinfer.secrets import SecretResolver
from .app import create_app, freeze_startup_objects
from .pool import PoolStore, follow
from .store import SingleEndpointStore

if TYPE_CHECKING:
    from ..backends.providers.outbound import OutboundHTTP

log = logging.getLogger("kubeinfer.serve")


def load_manifest(path: str | Path) -> dict[str, Any]:
    """The one InferenceEndpoint in a YAML (or JSON) file."""
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    endpoints = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if len(endpoints) != 1:
        raise validation_exception(f"[{path}] must hold exactly one {KIND}, found {len(endpoints)}")
    return endpoints[0]


def load_endpoints(path: str | Path, secrets_dir: str | Path) -> list[InferenceEndpointConfig]:
    """Every InferenceEndpoint of a YAML file (none is fine: an empty pool), validated
    against the catalog, secrets resolved."""
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    resolver = SecretResolver(secrets_dir)
    return [resolver.resolve(catalog.from_manifest(d)) for d in documents
            if isinstance(d, dict) and d.get("kind") == KIND]


def load_endpoint(path: str | Path, secrets_dir: str | Path) -> InferenceEndpointConfig:
    """The manifest validated against the catalog, secrets resolved."""
    config = catalog.from_manifest(load_manifest(path))
    return SecretResolver(secrets_dir).resolve(config)


def build_app(
    config: InferenceEndpointConfig, backend: Backend, on_start_failure: Callable[[BaseException], None] | None = None,
    on_started: Callable[[], None] | None = None, outbound: OutboundHTTP | None = None,
) -> FastAPI:
    """The serve app for one endpoint; its lifespan opens ``outbound`` (the provider calls'
    pools ``backend`` was given), starts ``backend``, and closes both."""
    store = SingleEndpointStore(config, backend)

    async def start() -> None:
        try:
            await backend.start()
            log.info("inference endpoint [%s] is ready", config.inference_id)
            if on_started is not None:
                on_started()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure to load must stop the pod
            reason = exc.reason if isinstance(exc, ElasticsearchError) else f"{type(exc).__name__}: {exc}"
            log.error("inference endpoint [%s] failed to start: %s", config.inference_id, reason)
            if on_start_failure is not None:
                on_start_failure(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if outbound is not None:
            await outbound.open()
        task = asyncio.create_task(start())
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await backend.close()
            if outbound is not None:
                await outbound.close()

    return create_app(store, lifespan=lifespan)


def build_pool_app(path: str | Path, secrets_dir: str | Path, make_backend: Callable[[InferenceEndpointConfig], Backend],
                   interval: float | None = None) -> FastAPI:
    """The serve app for the endpoints of the file at ``path``, followed while it runs."""
    store = PoolStore(make_backend)

    def load(file: str | Path) -> list[InferenceEndpointConfig]:
        try:
            return load_endpoints(file, secrets_dir)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}") from None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options = {} if interval is None else {"interval": interval}
        task = asyncio.create_task(follow(path, load, store.update, **options), name="follow-pool")
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await store.close()

    return create_app(store, lifespan=lifespan)


def refused_to_start(exc: ElasticsearchError | OSError | yaml.YAMLError, config: str | Path) -> int:
    """Say on stderr why the endpoint file at ``config`` cannot be served; the exit status."""
    if isinstance(exc, ElasticsearchError):
        reason = f"{exc.type}: {exc.reason}"
    elif isinstance(exc, OSError):
        reason = f"cannot read [{config}]: {exc.strerror or exc}"
    else:
        reason = f"[{config}] is not valid YAML: {exc}"
    print(f"kubeinfer serve: {reason}", file=sys.stderr)
    return 2


def run_pool(args: argparse.Namespace, settings: ServerSettings) -> int:
    import uvicorn

    def make_backend(config: InferenceEndpointConfig) -> Backend:
        return create_backend(config, cache_dir=getattr(args, "cache_dir", None), settings=settings)

    try:
        load_endpoints(args.config, args.secrets_dir)
    except (ElasticsearchError, OSError, yaml.YAMLError) as exc:
        return refused_to_start(exc, args.config)
    app = build_pool_app(args.config, args.secrets_dir, make_backend)
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False)).run()
    return 0


def run(args: argparse.Namespace) -> int:
    settings = ServerSettings.from_env()
    if getattr(args, "pool", False):
        return run_pool(args, settings)
    outbound = None
    try:
        config = load_endpoint(args.config, args.secrets_dir)
        if not serves_locally(config.service):
            # The provider calls' pools (aiohttp, httpx): a model server never opens them,
            # nor spends its start importing them.
            from ..backends.providers.outbound import OutboundHTTP

            outbound = OutboundHTTP(settings)
        backend = create_backend(config, cache_dir=getattr(args, "cache_dir", None), settings=settings,
                                 outbound=outbound)
    except (ElasticsearchError, OSError, yaml.YAMLError) as exc:
        return refused_to_start(exc, args.config)
    return serve(config, backend, args.host, args.port, outbound=outbound)


def serve(config: InferenceEndpointConfig, backend: Backend, host: str, port: int, log_level: str = "info",
          outbound: OutboundHTTP | None = None) -> int:
    """Serve one endpoint with uvicorn until stopped: 0, or 1 when its backend failed to start.
    ``outbound`` is the provider calls' pools ``backend`` was given, opened and closed with the app."""
    import uvicorn

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    app = build_app(config, backend, on_start_failure=stop, on_started=freeze_startup_objects, outbound=outbound)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))
    server.run()
    return 1 if failures else 0
