"""The hook through which a front (the gateway) hands a request on as bytes.

Every inference route (Elasticsearch's, its ``_stream`` form, chat completion's and
OpenAI's) finds the endpoint a request names and checks that the route serves it; then,
when the app was built with a ``Relay`` and it takes the endpoint's backend, the request
goes on to where the endpoint is served as it came (method, path, query string, body)
and its answer comes back as it was sent, neither body parsed nor re-encoded: the
endpoint's own server validates and renders. A ``Relay`` answers ``None`` for a backend
it cannot relay (a model in this process), which the routes then serve themselves, and
raises ``ElasticsearchError`` for its own failures (the endpoint unreachable, a deadline
passed), which each route writes in its API's shape. This module knows no HTTP client
and no gateway.
"""

from __future__ import annotations

from typing import Optional, Protocol

from starlette.requests import Request
from starlette.responses import Response

from ..backends.base import Backend
from .inference_request import parse_time_value


class Relay(Protocol):
    async def __call__(self, backend: Backend, http: Request, timeout: float) -> Optional[Response]:
        """``http`` handed on for ``backend``, and the answer as it comes; None when
        ``backend`` is not one it relays. ``timeout``: the request's deadline in seconds."""
        ...


def request_timeout(http: Request, default: float) -> float:
    """The deadline ``http`` asks for (``?timeout=``, Elasticsearch's time value), else ``default``."""
    return parse_time_value(http.query_params.get("timeout"), default=default)


