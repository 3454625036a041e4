"""Endpoints run in this process: the store behind local mode.

Endpoints come from InferenceEndpoint manifests (given at start) and from the create API.
Those created through the API persist in a state directory, one JSON file per endpoint
holding Elasticsearch's create body, plain secrets included: the directory is readable
by the user only (0700, files 0600) and nothing read back from it is ever returned by
GET. Manifest endpoints belong to their files: changes made to them through the API
last until the process stops. A local model whose adaptive allocations allow zero
unloads after ``scale_to_zero_after`` idle seconds and loads again on the next request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..backends.base import Backend
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
        self._ensure()
        record = {"inference_id": config.inference_id, "task_type": config.task_type.value, **create_body(config)}
        target = self._path(config.inference_id)
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(record, out, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)

    def remove(self, inference_id: str) -> None:
        self._path(inference_id).unlink(missing_ok=True)

    def load(self) -> list[InferenceEndpointConfig]:
        if not self.endpoints_dir.is_dir():
            return []
        configs = []
        for path in sorted(self.endpoints_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                configs.append(parse_endpoint(record["inference_id"], record["task_type"], record))
            except (OSError, ValueError, KeyError, ElasticsearchError) as exc:
                # The reason only: the record holds secrets.
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
        self._lock = asyncio.Lock()

    # ---- the EndpointStore the inference routes read ------------------------------
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
        return await self._add(config, timeout=timeout, persist=True)

    async def add_from_manifest(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        return await self._add(config, timeout=timeout, persist=False)

    async def _add(self, config: InferenceEndpointConfig, *, timeout: float, persist: bool) -> InferenceEndpointConfig:
        async with self._lock:
            if config.inference_id in self._entries:
                raise already_exists(config.inference_id)
            backend = await self._start(config, timeout)
            config = with_model_facts(config, backend.describe())
            if persist and self.state is not None:
                self.state.save(config)
            self._entries[config.inference_id] = _Entry(config, backend, persist and self.state is not None)
        log.info("endpoint [%s] (%s, %s) is ready", config.inference_id, config.task_type.value, config.service)
        return config

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        async with self._lock:
            old = self._entry(config.inference_id)
            backend = await self._start(config, timeout)
            config = with_model_facts(config, backend.describe())
            self._entries[config.inference_id] = _Entry(config, backend, old.persisted)
            if old.persisted and self.state is not None:
                self.state.save(config)
        await _close_quietly(old.backend)
        return config

    async def delete(self, inference_id: str) -> None:
        async with self._lock:
            entry = self._entry(inference_id)
            del self._entries[inference_id]
            if entry.persisted and self.state is not None:
                self.state.remove(inference_id)
        await _close_quietly(entry.backend)

    async def restore(self, *, timeout: float) -> list[InferenceEndpointConfig]:
        """Start the endpoints kept in the state directory; a broken one is logged and skipped."""
        started = []
        for config in self.state.load() if self.state is not None else []:
            try:
                async with self._lock:
                    if config.inference_id in self._entries:
                        log.warning("stored endpoint [%s] is shadowed by a manifest", config.inference_id)
                        continue
                    backend = await self._start(config, timeout)
                    self._entries[config.inference_id] = _Entry(config, backend, True)
                started.append(config)
            except ElasticsearchError as exc:
                log.error("stored endpoint [%s] did not start: %s", config.inference_id, exc.reason)
        return started

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


def _time(seconds: float) -> str:
    return f"{seconds:g}s"


async def _close_quietly(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception:  # closing must never mask the error being reported
        log.exception("closing a backend failed")
