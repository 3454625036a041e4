"""Scale from zero at the gateway: a request for an endpoint whose replicas are at zero
is held while the endpoint wakes, then forwarded.

The operator reports such an endpoint ``Ready=True`` with reason ``ScaledToZero``. The
backend here counts the request on ``kubeinfer_gateway_requests_held`` (KEDA's trigger
adds it to the in-flight requests, so activation takes the endpoint from 0 to 1) and,
where no KEDA owns the replica count, sets the Deployment's ``replicas`` to 1 through the
scale subresource. It then waits for the endpoint to report available replicas and
forwards as usual. The request's own time limit (the route's) bounds the wait: a 408 after
it. This module knows the resource's facts, not what the operator builds.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import Response

from kubeinfer.resource import AUTOSCALER_ANNOTATION, HELD_METRIC, SCALED_TO_ZERO, is_ready, ready_condition
from kubeinfer.errors import status_exception
from ..api.inference_request import format_time_value, parse_time_value
from ..backends.base import InferenceRequest
from ..backends.chat import ChatCompletionChunk, ChatRequest
from .forwarding import ForwardingBackend

log = logging.getLogger("kubeinfer.gateway")

HELD = Gauge(HELD_METRIC, "Requests the gateway holds for an endpoint at zero replicas while it wakes.",
             ["endpoint_namespace", "inference_id"])


def at_zero(obj: Mapping[str, Any]) -> bool:
    """Whether the endpoint is usable but has no replica running: it must be woken."""
    condition = ready_condition(obj) or {}
    return is_ready(obj) and condition.get("reason") == SCALED_TO_ZERO


def scaled_by_keda(deployment: Mapping[str, Any] | None) -> bool:
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(AUTOSCALER_ANNOTATION) == "keda"


class WakingBackend(ForwardingBackend):
    """Forwards like ``ForwardingBackend`` once ``wake`` has brought the endpoint up.

    ``wake`` makes the endpoint scale (idempotent); ``awake`` reads whether it now serves
    and where. Both are the store's."""

    def __init__(self, config: Any, base_url: str, client: Any, *, namespace: str,
                 wake: Callable[[], Awaitable[None]], awake: Callable[[], Awaitable[str | None]],
                 poll_interval: float) -> None:
        super().__init__(config, base_url, client)
        self.namespace = namespace
        self._wake, self._awake = wake, awake
        self.poll_interval = poll_interval

    async def _until_awake(self) -> None:
        gauge = HELD.labels(self.namespace, self.config.inference_id)
        gauge.inc()
        try:
            log.info("endpoint [%s] is at zero replicas: waking it for a request", self.config.inference_id)
            await self._wake()
            while (url := await self._awake()) is None:
                await asyncio.sleep(self.poll_interval)
            self.base_url = url.split("/_inference/", 1)[0].rstrip("/")
        finally:
            gauge.dec()

    async def infer(self, request: InferenceRequest) -> dict[str, Any]:
        await self._until_awake()
        return await super().infer(request)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[dict[str, Any]]:
        await self._until_awake()
        async for chunk in super().stream(request):
            yield chunk

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        await self._until_awake()
        async for chunk in super().chat(request):
            yield chunk

    async def relay(self, http: Request, stream: bool) -> Response:
        # The route's time limit bounds the wait, as it bounds inference: a 408 after it.
        timeout = parse_time_value(http.query_params.get("timeout"))
        try:
            await asyncio.wait_for(self._until_awake(), None if math.isinf(timeout) else timeout)
        except asyncio.TimeoutError:
            raise status_exception(f"timeout [{format_time_value(timeout)}] waiting for inference result", 408) from None
        return await super().relay(http, stream)
