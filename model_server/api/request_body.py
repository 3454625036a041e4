"""The one way a request body comes in: bounded in size, JSON by content type, strictly decoded.

``RequestBodyGate`` is ASGI middleware in front of every app (``serve``, the gateway,
local mode). It answers ``413`` as soon as a body is known to pass the limit (from its
``Content-Length``, or while a chunked body streams in) and ``406`` for a body whose
``Content-Type`` is not JSON, both as Elasticsearch does (in OpenAI's error shape under
``/v1``), before any route reads a byte. ``read_json_body`` then decodes what got through with ``kubeinfer.strict_json``,
so lone surrogates, deep nesting, huge numbers and ``NaN`` are a ``400`` rather than an
error deep inside a route.

The limit is Elasticsearch's ``http.max_content_length``: ``HttpSettings``'
``KUBEINFER_HTTP_MAX_CONTENT_LENGTH`` (10 MiB unless set).

This module knows nothing of inference endpoints.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubeinfer import strict_json
from kubeinfer.config import HttpSettings
from kubeinfer.errors import ElasticsearchError
from .openai_errors import is_openai_path, openai_error_body

# Media types holding JSON: Elasticsearch's own and its versioned "compatible-with" form.
_JSON_TYPES = {"application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
               "application/vnd.elasticsearch+x-ndjson"}


def content_too_long(limit: int) -> ElasticsearchError:
    return ElasticsearchError(
        413, "content_too_long_exception",
        f"request body is larger than the maximum allowed [{limit}] bytes (http.max_content_length)",
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _JSON_TYPES


class RequestBodyGate:
    """Bounds request bodies to ``limit`` bytes and admits JSON bodies only."""

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self.limit = int(HttpSettings.from_env().http_max_content_length) if limit is None else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        content_type = _header(scope, b"content-type")
        openai = is_openai_path(scope["path"])
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _send_error(send, ElasticsearchError(400, "parse_exception", "invalid Content-Length header"),
                                  openai=openai)
                return
            if declared > self.limit:
                await _send_error(send, content_too_long(self.limit), openai=openai)
                return
        has_body = (length not in (None, "0")) or _header(scope, b"transfer-encoding") is not None
        if has_body and content_type is not None and not _is_json(content_type):
            reason = f"Content-Type header [{content_type}] is not supported"
            if openai:
                await _send_json(send, 406, openai_error_body(406, reason))
            else:  # Elasticsearch's REST layer answers content-type problems with a flat error string
                await _send_json(send, 406, {"error": reason, "status": 406})
            return

        received = 0
        limit = self.limit
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route that reads: the app renders it as the 413 it is.
                    raise content_too_long(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except ElasticsearchError as exc:  # read outside any route (another middleware)
            if exc.status != 413 or started:
                raise
            await _send_error(send, exc, openai=openai)


async def _send_json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-elastic-product", b"Elasticsearch"),
    ]})
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Send, error: ElasticsearchError, *, openai: bool) -> None:
    body = openai_error_body(error.status, error.reason, code=error.type) if openai else error.to_body()
    await _send_json(send, error.status, body)


def parse_json_body(raw: bytes) -> Any:
    """The request body as JSON, or Elasticsearch's ``parse_exception``."""
    if not raw or not raw.strip():
        raise ElasticsearchError(400, "parse_exception", "request body is required")
    try:
        return strict_json.loads(raw)
    except strict_json.JSONRefused as exc:
        raise ElasticsearchError(400, "parse_exception", f"Failed to parse request body: {exc}") from None


async def read_json_body(request: Request) -> Any:
    """The JSON body of ``request``; the gate in front has bounded its size."""
    return parse_json_body(await request.body())
