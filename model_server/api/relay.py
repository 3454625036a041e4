"""The hook through which a front (the gateway) hands an inference request on as bytes.

The inference routes find the endpoint and check the task type; then, when the app was
built with a ``Relay`` and it takes the endpoint's backend, the request goes on to where
the endpoint is served and its answer comes back as it was sent, neither body parsed nor
re-encoded: the endpoint's own server validates and renders. A ``Relay`` answers
``None`` for a backend it cannot relay (a model in this process), which the routes then
serve themselves. This module knows no HTTP client and no gateway.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Optional

from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import Backend

# (backend, the incoming request, whether it is a `_stream` request) -> the answer, or None.
Relay = Callable[[Backend, Request, bool], Awaitable[Optional[Response]]]
