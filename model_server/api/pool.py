"""One model server for several endpoints: a pool's pod, or an endpoint whose model other
endpoints use (Elasticsearch's ``deployment_id``).

``PoolStore`` holds one backend per model and maps every endpoint to one: an endpoint
whose ``deployment_id`` names another endpoint of the pool shares that one's backend, so
its model is in memory once. ``update(configs)`` loads the models that are new and
unloads those that went, in the running process; ``follow(path, ...)`` calls it whenever
the manifest file changes, as a mounted ConfigMap does in place. Each model is ready or
not on its own (``model_state``, served as ``/readyz?model=<id>``): a model that cannot
load fails alone, never the pod.

This module knows endpoints and backends, not Kubernetes, HTTP routes or the catalog's services.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError, not_found, status_exception

log = logging.getLogger("kubeinfer.pool")

# How often a followed manifest file is read again.
FOLLOW_INTERVAL = 1.0


def deployment_of(config: InferenceEndpointConfig) -> str:
    """The endpoint whose model serves ``config``: the one its ``deployment_id`` names, else
    itself. (An external service's ``deployment_id``, Azure OpenAI's, is the provider's own;
    a built-in model's id names that model's deployment, which the endpoint runs itself.)"""
    host = None if config.spec.external else getattr(config.service_settings, "deployment_id", None)
    if host is None or host == getattr(config.service_settings, "model_id", None):
        return config.inference_id  # a built-in model's own deployment: the endpoint runs it
    return host


@dataclass(frozen=True)
class ModelState:
    """Whether an endpoint's model can answer, and why not."""

    ready: bool
    reason: str = ""
    # Not ready only because it is still loading (it may become ready on its own).
    loading: bool = False


class PoolStore:
    """The endpoints a model-server pod serves, any number of them, changed while it runs."""

    def __init__(self, make_backend: Callable[[InferenceEndpointConfig], Backend]) -> None:
        self._make_backend = make_backend
        self._configs: dict[str, InferenceEndpointConfig] = {}
        # By the endpoint that owns the model: its config as loaded, its backend, its start.
        self._loaded: dict[str, InferenceEndpointConfig] = {}
        self._backends: dict[str, Backend] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, str] = {}
        # The models of the first list applied: the pod's readiness waits for them alone.
        self._first: set[str] | None = None
        self._lock = asyncio.Lock()

    # ---- changing what is served ------------------------------------------------------------
    async def update(self, configs: Iterable[InferenceEndpointConfig]) -> None:
        """Serve exactly ``configs``: load new models, unload those no endpoint uses any more
        (or whose settings changed), keep the rest running untouched."""
        async with self._lock:
            wanted = {c.inference_id: c for c in configs}
            owners = {i: c for i, c in wanted.items() if deployment_of(c) == i}
            for owner in [o for o in self._loaded if owners.get(o) != self._loaded[o]]:
                await self._unload(owner)
            self._configs = wanted
            for owner, config in owners.items():
                if owner not in self._loaded:
                    self._load(owner, config)
            if self._first is None:
                self._first = set(owners)

    def _load(self, owner: str, config: InferenceEndpointConfig) -> None:
        self._loaded[owner] = config
        try:
            backend = self._make_backend(config)
        except ElasticsearchError as exc:
            self._failures[owner] = exc.reason
            log.error("inference endpoint [%s] cannot be served: %s", owner, exc.reason)
            return
        self._backends[owner] = backend
        self._starting[owner] = asyncio.create_task(self._start(owner, backend), name=f"load-{owner}")

    async def _start(self, owner: str, backend: Backend) -> None:
        try:
            await backend.start()
            log.info("inference endpoint [%s] is ready", owner)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a model that cannot load fails alone
            reason = exc.reason if isinstance(exc, ElasticsearchError) else f"{type(exc).__name__}: {exc}"
            self._failures[owner] = reason
            log.error("inference endpoint [%s] failed to start: %s", owner, reason)
        finally:
            self._starting.pop(owner, None)

    async def _unload(self, owner: str) -> None:
        self._loaded.pop(owner, None)
        self._failures.pop(owner, None)
        task = self._starting.pop(owner, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        backend = self._backends.pop(owner, None)
        if backend is not None:
            await backend.close()
            log.info("inference endpoint [%s] unloaded", owner)

    async def close(self) -> None:
        async with self._lock:
            for owner in list(self._loaded):
                await self._unload(owner)
            self._configs = {}

    # ---- readiness ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """The pod is ready once the models it started with are loaded or have failed (each
        endpoint says which on its own, ``model_state``). A model added later does not make
        it unready while it loads: the pod goes on serving the others meanwhile."""
        return self._first is not None and not self._first & set(self._starting)

    def model_state(self, inference_id: str) -> ModelState | None:
        """The state of the endpoint's model; None for an endpoint this server does not serve."""
        config = self._configs.get(inference_id)
        if config is None:
            return None
        owner = deployment_of(config)
        problem = self._sharing_problem(config, owner)
        if problem:
            return ModelState(False, problem)
        if owner in self._failures:
            return ModelState(False, self._failures[owner])
        backend = self._backends.get(owner)
        if backend is None or not backend.ready:
            return ModelState(False, "its model is loading", loading=True)
        return ModelState(True)

    def _sharing_problem(self, config: InferenceEndpointConfig, owner: str) -> str:
        if owner == config.inference_id:
            return ""
        host = self._configs.get(owner)
        if host is None:
            return f"Cannot find deployment [{owner}]"
        if host.task_type is not config.task_type:
            return (f"Deployment [{owner}] serves task type [{host.task_type}], not the endpoint's "
                    f"[{config.task_type}]")
        model, theirs = getattr(config.service_settings, "model_id", None), getattr(host.service_settings, "model_id", None)
        if model is not None and model != theirs:
            return (f"Deployment [{owner}] uses model [{theirs}] which does not match the model [{model}] "
                    f"in the request.")
        return ""

    # ---- the EndpointStore protocol --------------------------------------------------------------
    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        config = self._configs.get(inference_id)
        if config is None:
            raise not_found(inference_id)
        return config

    async def backend(self, inference_id: str) -> Backend:
        config = await self.get(inference_id)
        state = self.model_state(inference_id)
        if state is not None and not state.ready:
            status = 503 if state.loading else 500
            raise status_exception(f"inference endpoint [{inference_id}] is not ready: {state.reason}", status)
        return self._backends[deployment_of(config)]

    async def list(self) -> list[InferenceEndpointConfig]:
        return [self._configs[i] for i in sorted(self._configs)]


async def follow(path: str | Path, load: Callable[[str | Path], list[InferenceEndpointConfig]],
                 apply: Callable[[list[InferenceEndpointConfig]], Awaitable[None]],
                 interval: float = FOLLOW_INTERVAL) -> None:
    """Read ``path`` every ``interval`` seconds and ``apply`` what ``load`` makes of it when it
    changed. A file that cannot be read or is invalid is logged and leaves the pool as it is.
    (A mounted ConfigMap changes by swapping a symlink: reading the path sees the new file.)"""
    seen = None
    while True:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            if digest != seen:
                configs = load(path)
                seen = digest
                log.info("serving %d inference endpoints from [%s]", len(configs), path)
                await apply(configs)
        except asyncio.CancelledError:
            raise
        except (OSError, ElasticsearchError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, ElasticsearchError) else str(exc)
            log.error("[%s] is not applied: %s", path, reason)
            seen = None
        await asyncio.sleep(interval)


class SharedBackend(Backend):
    """An endpoint on another endpoint's deployment where each endpoint has its own entry
    (local mode): it answers with the host's backend, found anew on each call (the host may
    be updated), and closing it leaves the host's model loaded."""

    def __init__(self, config: InferenceEndpointConfig, host: Callable[[], Backend | None]) -> None:
        super().__init__(config)
        self._host = host

    def _backend(self) -> Backend:
        backend = self._host()
        if backend is None:
            raise status_exception(f"Cannot find deployment [{deployment_of(self.config)}]", 404)
        return backend

    @property
    def ready(self) -> bool:
        backend = self._host()
        return backend is not None and backend.ready

    def describe(self) -> dict:
        backend = self._host()
        return backend.describe() if backend is not None else {}

    async def infer(self, request):  # type: ignore[no-untyped-def]
        return await self._backend().infer(request)

    async def stream(self, request):  # type: ignore[no-untyped-def]
        async for piece in self._backend().stream(request):
            yield piece

    async def chat(self, request):  # type: ignore[no-untyped-def]
        async for chunk in self._backend().chat(request):
            yield chunk
