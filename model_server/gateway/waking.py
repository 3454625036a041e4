"""Scale from zero at the gateway: a request for an endpoint whose replicas are at zero
is held while the endpoint wakes, then forwarded.

The operator reports such an endpoint ``Ready=True`` with reason ``ScaledToZero``. The
gateway counts the request on ``kubeinfer_gateway_requests_held`` (KEDA's trigger adds it
to the in-flight requests, so activation takes the endpoint from 0 to 1) and, where no
KEDA owns the replica count, sets the Deployment's ``replicas`` to 1 through the scale
subresource. It then waits for the endpoint to report available replicas and relays the request as
usual, telling the endpoint the time left of its deadline.

Holding is bounded (``WakeUps``): every request held for one endpoint waits on the same
wake-up, which polls the API once for all of them and stops when none is left; at most
``KUBEINFER_HELD_REQUESTS_PER_ENDPOINT`` are held at once (a 429 past it); none longer than
its own ``timeout`` nor ``KUBEINFER_MAX_HOLD`` (a 408 after it); and a request whose
client has gone is dropped, never forwarded. This module knows the resource's facts, not
what the operator builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from kubeinfer.resource import AUTOSCALER_ANNOTATION, HELD_METRIC, SCALED_TO_ZERO, is_ready, ready_condition
from kubeinfer.errors import ElasticsearchError, status_exception
from ..api.deadline import deadline
from kubeinfer.catalog import InferenceEndpointConfig
from .forwarding import ForwardingBackend, server_root

log = logging.getLogger("kubeinfer.gateway")

HELD = Gauge(HELD_METRIC, "Requests the gateway holds for an endpoint at zero replicas while it wakes.",
             ["endpoint_namespace", "inference_id"])

# The ASGI ``receive`` of the request being served: once its body has been read, what it
# answers next is ``http.disconnect``, when the client goes.
_CLIENT: ContextVar[Receive | None] = ContextVar("kubeinfer_client", default=None)


class ClientWatch:
    """ASGI middleware keeping each request's ``receive`` where a held request can listen
    for its client leaving (the routes that hold know no ``Request``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _CLIENT.set(receive if scope["type"] == "http" else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _CLIENT.reset(token)


async def _client_gone() -> None:
    """Returns when the current request's client disconnects; never where none is known.

    Call it only once the request's body has been read: it reads what comes next."""
    receive = _CLIENT.get()
    if receive is None:
        await asyncio.Event().wait()
        return
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass
class _WakeUp:
    task: asyncio.Task
    holders: int = 0


class WakeUps:
    """The wake-ups in progress, one per endpoint, and the requests each holds."""

    def __init__(self, namespace: str, *, poll_interval: float, per_endpoint: int, max_hold: float) -> None:
        self.namespace, self.poll_interval = namespace, poll_interval
        self.per_endpoint, self.max_hold = per_endpoint, max_hold
        self._wake_ups: dict[str, _WakeUp] = {}

    async def hold(self, inference_id: str, wake: Callable[[], Awaitable[None]],
                   awake: Callable[[], Awaitable[str | None]], timeout: float) -> str:
        """The endpoint's URL once it serves, for one request held at most ``timeout``
        seconds (and ``max_hold``) and only while its client stays."""
        wake_up = self._wake_ups.get(inference_id)
        if wake_up is None or (wake_up.task.done() and wake_up.task.exception() is not None):
            wake_up = self._wake_ups[inference_id] = _WakeUp(
                asyncio.create_task(self._until_awake(inference_id, wake, awake)))
        if wake_up.holders >= self.per_endpoint:
            raise status_exception(
                f"Inference endpoint [{inference_id}] is waking from zero replicas and already holds "
                f"[{self.per_endpoint}] requests (KUBEINFER_HELD_REQUESTS_PER_ENDPOINT); try again later", 429)
        limit = min(timeout, self.max_hold)
        gauge = HELD.labels(self.namespace, inference_id)
        wake_up.holders += 1
        gauge.inc()
        gone = asyncio.create_task(_client_gone())
        try:
            async with deadline(limit, "KUBEINFER_MAX_HOLD" if limit < timeout else None):
                await asyncio.wait({wake_up.task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if wake_up.task.done():
                return wake_up.task.result()
            raise status_exception(f"The client of a request held for [{inference_id}] has gone", 499)
        finally:
            gone.cancel()
            gauge.dec()
            wake_up.holders -= 1
            if wake_up.holders == 0 and self._wake_ups.get(inference_id) is wake_up:
                del self._wake_ups[inference_id]
                wake_up.task.cancel()  # nobody waits: stop polling

    async def _until_awake(self, inference_id: str, wake: Callable[[], Awaitable[None]],
                           awake: Callable[[], Awaitable[str | None]]) -> str:
        log.info("endpoint [%s] is at zero replicas: waking it for a request", inference_id)
        await wake()
        while (url := await awake()) is None:
            await asyncio.sleep(self.poll_interval)
        return url

    async def close(self) -> None:
        for wake_up in self._wake_ups.values():
            wake_up.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ElasticsearchError):
                await wake_up.task
        self._wake_ups.clear()


def at_zero(obj: Mapping[str, Any]) -> bool:
    """Whether the endpoint is usable but has no replica running: it must be woken."""
    condition = ready_condition(obj) or {}
    return is_ready(obj) and condition.get("reason") == SCALED_TO_ZERO


def scaled_by_keda(deployment: Mapping[str, Any] | None) -> bool:
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(AUTOSCALER_ANNOTATION) == "keda"


class WakingBackend(ForwardingBackend):
    """An endpoint at zero replicas: the relay reaches its server once it is awake.

    ``wake`` makes the endpoint scale (idempotent); ``awake`` reads whether it now serves
    and where. Both are the store's, as are the ``wake_ups`` that hold the request."""

    holds = True

    def __init__(self, config: InferenceEndpointConfig, base_url: str, *, wake_ups: WakeUps,
                 wake: Callable[[], Awaitable[None]], awake: Callable[[], Awaitable[str | None]]) -> None:
        super().__init__(config, base_url)
        self.wake_ups = wake_ups
        self._wake, self._awake = wake, awake

    async def address(self, timeout: float) -> str:
        url = await self.wake_ups.hold(self.config.inference_id, self._wake, self._awake, timeout)
        return server_root(url)
