"""Endpoints run in this process: the store behind local mode.

Endpoints come from InferenceEndpoint manifests (given at start) and from the create API.
Those created through the API persist in a state directory, one JSON file per endpoint
holding Elasticsearch's create body, plain secrets included: the directory is readable
by the user only (0700, files 0600) and nothing read back from it is ever returned by
GET. Manifest endpoints belong to their files: changes made to them through the API
last until the process stops. A local model whose adaptive allocations allow zero
unloads after ``scale_to_zero_after`` idle seconds and loads again on the next request.

An endpoint of a manifest or of the state directory whose backend cannot start (its
provider is down) is kept, as Elasticsearch keeps it: it is listed and can be deleted, and inference answers a clear
error while starting it is tried again. A state file that cannot be read is skipped with
an error in the log. No network call is made while holding the store's lock: a provider
that hangs holds up its own create, never another endpoint's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from ..api import metrics
from ..backends.base import Backend, DelegatingBackend
from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, parse_endpoint

from ..backends.registry import create_backend
from ..backends.scale_to_zero import UnloadingBackend, scales_to_zero
from kubeinfer.errors import ElasticsearchError, not_found, status_exception
from .store import already_exists, create_body, with_model_facts

log = logging.getLogger("kubeinfer.local")

DEFAULT_STATE_DIR = Path("~/.kubeinfer/state")

BackendFactory = Callable[[InferenceEndpointConfig], Backend]


@dataclass
class _Entry:
    config: InferenceEndpointConfig
    backend: Backend
    persisted: bool


class EndpointState:
    """The state directory: ``<dir>/endpoints/<inference_id>.json``, private to the user."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.endpoints_dir = self.directory / "endpoints"

    def _ensure(self) -> None:
        for d in (self.directory, self.endpoints_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def _path(self, inference_id: str) -> Path:
        return self.endpoints_dir / f"{inference_id}.json"

    def save(self, config: InferenceEndpointConfig) -> None:
        """Write the endpoint's record atomically; a failure (a full disk) leaves no file behind
        and is Elasticsearch's error."""
        record = {"inference_id": config.inference_id, "task_type": config.task_type.value, **create_body(config)}
        target = self._path(config.inference_id)
        tmp = target.with_suffix(".tmp")
        try:
            self._ensure()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(record, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise status_exception(
                f"Could not store inference endpoint [{config.inference_id}] in [{self.endpoints_dir}]: "
                f"{exc.strerror or type(exc).__name__}", 500,
            ) from None

    def remove(self, inference_id: str) -> None:
        self._path(inference_id).unlink(missing_ok=True)

    def load(self) -> list[InferenceEndpointConfig]:
        if not self.endpoints_dir.is_dir():
            return []
        for leftover in self.endpoints_dir.glob("*.tmp"):  # a write cut short (a full disk, a crash)
            leftover.unlink(missing_ok=True)
        configs = []
        for path in sorted(self.endpoints_dir.glob("*.json")):
            try:
                record = strict_json.loads(path.read_bytes())
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                configs.append(parse_endpoint(record["inference_id"], record["task_type"], record))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the start
                # The reason only, never the record: it holds secrets.
                reason = exc.reason if isinstance(exc, ElasticsearchError) else type(exc).__name__
                log.error("skipping stored endpoint %s: %s", path.name, reason)
        return configs


class LocalEndpointStore:
    """In-process endpoints; ``resolve`` turns ``secretKeyRef`` settings into values."""

    def __init__(
        self,
        state: EndpointState | None = None,
        *,
        resolve: Callable[[InferenceEndpointConfig], InferenceEndpointConfig] = lambda c: c,
        backend_factory: BackendFactory = create_backend,
        scale_to_zero_after: float = 900.0,
    ) -> None:
        self.state = state
        self.resolve = resolve
        self.backend_factory = backend_factory
        # Local models whose adaptive allocations allow zero unload after this many idle seconds.
        self.scale_to_zero_after = scale_to_zero_after
        self._entries: dict[str, _Entry] = {}
        # Ids being created or updated: reserved under the lock, started outside it.
        self._busy: set[str] = set()
        self._lock = asyncio.Lock()

    # ---- the EndpointStore the inference routes read ------------------------------
    @property
    def ready(self) -> bool:
        """Local mode answers from its start; an endpoint still starting says so itself."""
        return True

    async def list(self) -> list[InferenceEndpointConfig]:
        return [e.config for e in self._entries.values()]

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        return self._entry(inference_id).config

    async def backend(self, inference_id: str) -> Backend:
        return self._entry(inference_id).backend

    def _entry(self, inference_id: str) -> _Entry:
        entry = self._entries.get(inference_id)
        if entry is None:
            raise not_found(inference_id)
        return entry

    # ---- management ---------------------------------------------------------------
    async def create(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        """Start ``config`` and keep it, in the state directory too: a failure leaves nothing."""
        inference_id = config.inference_id
        async with self._lock:
            if inference_id in self._entries or inference_id in self._busy:
                raise already_exists(inference_id)
            self._busy.add(inference_id)
        try:
            backend = await self._start(config, timeout)
            config = with_model_facts(config, backend.describe())
            persisted = self.state is not None
            async with self._lock:
                try:
                    if persisted:
                        self.state.save(config)
                except ElasticsearchError:
                    await _close_quietly(backend)
                    raise
                self._entries[inference_id] = _Entry(config, backend, persisted)
        finally:
            self._busy.discard(inference_id)
        log.info("endpoint [%s] (%s, %s) is ready", inference_id, config.task_type.value, config.service)
        return config

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        inference_id = config.inference_id
        async with self._lock:
            self._entry(inference_id)
            if inference_id in self._busy:
                raise status_exception(f"Inference endpoint [{inference_id}] is being changed by another request",
                                       409)
            self._busy.add(inference_id)
        try:
            backend = await self._start(config, timeout)
            config = with_model_facts(config, backend.describe())
            async with self._lock:
                old = self._entries.get(inference_id)
                if old is None:  # deleted while the new backend started
                    await _close_quietly(backend)
                    raise not_found(inference_id)
                if old.persisted and self.state is not None:
                    try:
                        self.state.save(config)
                    except ElasticsearchError:
                        await _close_quietly(backend)
                        raise
                self._entries[inference_id] = _Entry(config, backend, old.persisted)
        finally:
            self._busy.discard(inference_id)
        await _close_quietly(old.backend)
        return config

    async def delete(self, inference_id: str) -> None:
        async with self._lock:
            entry = self._entry(inference_id)
            del self._entries[inference_id]
            if entry.persisted and self.state is not None:
                self.state.remove(inference_id)
        # Requests in flight on it fail at once (the backend's close fails them).
        await _close_quietly(entry.backend)
        metrics.forget_endpoint(inference_id)

    async def start(self, manifests: list[InferenceEndpointConfig], *, timeout: float) -> None:
        """Start the manifests' endpoints and those kept in the state directory, all side by
        side: one slow provider must not hold up the others. An endpoint that cannot start is
        kept all the same, answering a clear error and tried again on use; a stored endpoint
        with a manifest's id is left to the manifest."""
        stored = self.state.load() if self.state is not None else []
        manifest_ids = {c.inference_id for c in manifests}
        kept = [(c, False) for c in manifests]
        for config in stored:
            if config.inference_id in manifest_ids or config.inference_id in self._entries:
                log.warning("stored endpoint [%s] is shadowed by a manifest", config.inference_id)
            else:
                kept.append((config, True))
        self._busy.update(c.inference_id for c, _ in kept)
        try:
            await asyncio.gather(*(self._keep(config, persisted, timeout) for config, persisted in kept))
        finally:
            self._busy.difference_update(c.inference_id for c, _ in kept)

    async def _keep(self, config: InferenceEndpointConfig, persisted: bool, timeout: float) -> None:
        """Start ``config`` and list it, started or not."""
        try:
            backend: Backend = await self._start(config, timeout)
            config = with_model_facts(config, backend.describe())
        except ElasticsearchError as exc:
            log.error("endpoint [%s] could not start, retrying on use: %s", config.inference_id, exc.reason)
            backend = DeferredBackend(config, lambda: self._start(config, RETRY_START_TIMEOUT), exc.reason)
        async with self._lock:
            self._entries[config.inference_id] = _Entry(config, backend, persisted)

    async def close(self) -> None:
        async with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await _close_quietly(entry.backend)

    async def _start(self, config: InferenceEndpointConfig, timeout: float) -> Backend:
        """Build and start the backend; Elasticsearch's errors when it cannot serve in time."""
        resolved = self.resolve(config)
        try:
            if scales_to_zero(resolved):
                backend: Backend = UnloadingBackend(resolved, lambda: self.backend_factory(resolved),
                                                    self.scale_to_zero_after)
            else:
                backend = self.backend_factory(resolved)
        except ElasticsearchError:
            raise
        except Exception as exc:  # a factory that rejects its settings
            raise status_exception(
                f"Could not create inference endpoint [{config.inference_id}]: {type(exc).__name__}: {exc}"
            ) from None
        try:
            limit = timeout if 0 < timeout < float("inf") else None
            await asyncio.wait_for(backend.start(), timeout=limit)
        except asyncio.TimeoutError:
            await _close_quietly(backend)
            raise status_exception(
                f"Timed out after [{_time(timeout)}] waiting for inference endpoint [{config.inference_id}] to start",
                408,
            ) from None
        except ElasticsearchError:
            await _close_quietly(backend)
            raise
        except Exception as exc:
            await _close_quietly(backend)
            log.exception("endpoint [%s] failed to start", config.inference_id)
            raise status_exception(
                f"Could not start inference endpoint [{config.inference_id}]: {type(exc).__name__}: {exc}"
            ) from None
        if not backend.ready:
            # Elasticsearch validates an endpoint by calling it before storing it.
            reason = getattr(backend, "not_ready_reason", None) or "it did not become ready"
            await _close_quietly(backend)
            raise status_exception(
                "Could not complete inference endpoint creation as validation call to service threw an "
                f"exception: {reason}"
            )
        return backend


# How long one retry of a stored endpoint's start may take, and how often it is tried.
RETRY_START_TIMEOUT = 30.0
RETRY_START_EVERY = 10.0


class DeferredBackend(DelegatingBackend):
    """An endpoint of a manifest or of the state directory whose backend could not start: it stays listed and deletable, and
    each request tries to start it (at most every ``RETRY_START_EVERY`` seconds), answering
    a clear error until that works."""

    def __init__(self, config: InferenceEndpointConfig, start: Callable[[], Awaitable[Backend]],
                 reason: str) -> None:
        super().__init__(config)
        self._start = start
        self.reason = reason
        self._backend: Backend | None = None
        self._next_try = time.monotonic() + RETRY_START_EVERY
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def ready(self) -> bool:
        return self._backend is not None and self._backend.ready

    def describe(self) -> dict[str, Any]:
        return self._backend.describe() if self._backend is not None else {}

    def _unavailable(self) -> ElasticsearchError:
        return status_exception(
            f"Inference endpoint [{self.config.inference_id}] is not available: it could not be started "
            f"({self.reason}); it is tried again on use", 409,
        )

    async def started(self) -> Backend:
        if self._backend is not None:
            return self._backend
        async with self._lock:
            if self._backend is not None:
                return self._backend
            if self._closed or time.monotonic() < self._next_try:
                raise self._unavailable()
            try:
                backend = await self._start()
            except ElasticsearchError as exc:
                self.reason = exc.reason
                self._next_try = time.monotonic() + RETRY_START_EVERY
                raise self._unavailable() from None
            if self._closed:
                await _close_quietly(backend)
                raise self._unavailable()
            self._backend = backend
            log.info("endpoint [%s] started", self.config.inference_id)
            return backend

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Backend]:
        yield await self.started()

    async def close(self) -> None:
        self._closed = True
        if self._backend is not None:
            await _close_quietly(self._backend)


def _time(seconds: float) -> str:
    return f"{seconds:g}s"


async def _close_quietly(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception:  # closing must never mask the error being reported
        log.exception("closing a backend failed")
