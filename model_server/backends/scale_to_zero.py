"""A backend that lets go of its model when idle and loads it again on demand: scale to
zero for one process, as adaptive allocations with a minimum of 0 ask.

``UnloadingBackend`` wraps a factory of the real backend. After ``quiet_period`` seconds
with no request in flight it closes the real backend (the model leaves memory); the next
request builds and starts a new one and is answered once it is loaded. The caller's own
time limit bounds that wait, so a request whose ``timeout`` passes first gets the usual
408. Cold starts are timed on ``kubeinfer_cold_start_seconds``.

This module knows no HTTP and no model: any backend can be wrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable

from prometheus_client import Histogram

from kubeinfer.catalog import InferenceEndpointConfig
from .base import Backend, DelegatingBackend

log = logging.getLogger(__name__)

COLD_START = Histogram(
    "kubeinfer_cold_start_seconds",
    "Time to load an endpoint's model again after it was unloaded for being idle.",
    ["inference_id"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)


def scales_to_zero(config: InferenceEndpointConfig) -> bool:
    """Whether the endpoint is a local model whose adaptive allocations allow zero
    (``min_number_of_allocations`` 0 or unset, as in Elasticsearch)."""
    if config.spec.external:
        return False
    adaptive = getattr(config.service_settings, "adaptive_allocations", None)
    return bool(adaptive is not None and adaptive.enabled and not adaptive.min_number_of_allocations)


class UnloadingBackend(DelegatingBackend):
    """Serves through a backend from ``factory``, unloaded after ``quiet_period`` idle seconds."""

    def __init__(self, config: InferenceEndpointConfig, factory: Callable[[], Backend], quiet_period: float) -> None:
        super().__init__(config)
        self.factory = factory
        self.quiet_period = quiet_period
        self._inner: Backend | None = None
        self._described: dict[str, Any] = {}
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    @property
    def ready(self) -> bool:
        # Unloaded is ready too: the next request loads the model.
        return self._inner is None or self._inner.ready

    @property
    def not_ready_reason(self) -> str | None:
        return getattr(self._inner, "not_ready_reason", None)

    async def start(self) -> None:
        await self._load()
        self._arm()

    async def close(self) -> None:
        self._disarm()
        async with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()

    def describe(self) -> dict[str, Any]:
        return self._inner.describe() if self._inner is not None else dict(self._described)

    # ---- loading and unloading ------------------------------------------------------------
    async def _load(self) -> Backend:
        async with self._lock:
            if self._inner is None:
                started = time.perf_counter()
                inner = self.factory()
                try:
                    await inner.start()
                except BaseException:
                    await inner.close()
                    raise
                self._inner = inner
                self._described = inner.describe()
                self.loads += 1
                if self.loads > 1:
                    seconds = time.perf_counter() - started
                    COLD_START.labels(self.config.inference_id).observe(seconds)
                    log.info("endpoint [%s] loaded its model again in %.2fs", self.config.inference_id, seconds)
            return self._inner

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Backend]:
        """The loaded backend, counted in flight (no unloading) while a call uses it."""
        self._in_flight += 1
        self._disarm()
        try:
            yield await self._load()
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._arm()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.quiet_period, lambda: loop.create_task(self._unload_if_idle()))

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _unload_if_idle(self) -> None:
        async with self._lock:
            if self._in_flight or self._inner is None:
                return
            inner, self._inner = self._inner, None
        log.info("endpoint [%s] idle for %gs: model unloaded", self.config.inference_id, self.quiet_period)
        await inner.close()
