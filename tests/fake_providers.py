"""A fake provider for the proxy backends' tests: an ASGI app that records every request
it receives and answers from replies the test queued per path.

Served in-process through ``httpx.ASGITransport`` (given to a backend as its
``transport`` option) or by uvicorn on a free port. Replies are written by the tests in
each provider's documented wire format; the fake itself knows no provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

import httpx

from kubeinfer.catalog import parse_endpoint
from model_server.backends.registry import create_backend


@dataclass
class Received:
    method: str
    host: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    # The caller's (address, port): one per connection over TCP.
    peer: tuple[str, int] | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Server-Sent Events as (event name or None, data) pairs, or raw lines (NDJSON).
    events: list[tuple[str | None, str]] | None = None
    lines: list[str] | None = None
    delay: float = 0.0
    # A body given as bytes, with its content type (binary formats).
    raw: bytes | None = None
    content_type: str = "application/octet-stream"

    def encode(self) -> tuple[bytes, str]:
        if self.raw is not None:
            return self.raw, self.content_type
        if self.events is not None:
            out = []
            for name, data in self.events:
                out.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
            return "".join(out).encode(), "text/event-stream"
        if self.lines is not None:
            return "".join(line + "\n" for line in self.lines).encode(), "application/stream+json"
        if self.text is not None:
            return self.text.encode(), "text/plain"
        return json.dumps(self.json).encode(), "application/json"


Handler = Callable[[Received], Reply]


async def read_body(receive) -> bytes:
    """The whole body of an ASGI request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class FakeProvider:
    """ASGI app: ``on(path, reply...)`` queues replies (the last one repeats)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._routes: dict[str, list[Reply | Handler]] = {}

    def on(self, path: str, *replies: Reply | Handler) -> "FakeProvider":
        self._routes[path] = list(replies)
        return self

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    @property
    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        received = Received(
            method=scope["method"],
            host=headers.get("host", ""),
            path=scope["path"],
            raw_path=raw_path.decode().split("?")[0],
            query={k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()},
            headers=headers,
            body=body,
            peer=tuple(scope["client"]) if scope.get("client") else None,
        )
        self.received.append(received)
        queue = self._routes.get(scope["path"])
        if not queue:
            reply = Reply(404, {"error": {"message": f"no route {scope['path']}"}})
        else:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            reply = item(received) if callable(item) else item
        if reply.delay:
            await asyncio.sleep(reply.delay)
        payload, content_type = reply.encode()
        out_headers = [(b"content-type", content_type.encode())]
        out_headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})


@contextlib.contextmanager
def serve_over_tcp(app) -> Iterator[int]:
    """Serve an ASGI app with uvicorn on a free local port (in a thread); yields the port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


def endpoint(service: str, task: str, service_settings: dict, task_settings: dict | None = None, inference_id="ep"):
    body: dict[str, Any] = {"service": service, "service_settings": service_settings}
    if task_settings is not None:
        body["task_settings"] = task_settings
    return parse_endpoint(inference_id, task, body)


async def post_through_server(backend, body: dict, *, stream: bool = False) -> httpx.Response:
    """Start ``backend`` behind ``kubeinfer serve``'s app and POST an inference request to it."""
    from model_server.api.serve import build_app

    config = backend.config
    app = build_app(config, backend)
    await backend.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as http:
            path = f"/_inference/{config.task_type.value}/{config.inference_id}" + ("/_stream" if stream else "")
            return await http.post(path, json=body)
    finally:
        await backend.close()


def backend_for(fake: FakeProvider, service: str, task: str, service_settings: dict, task_settings=None,
                inference_id: str = "ep", **options):
    options.setdefault("validate_at_start", False)
    options.setdefault("transport", fake.transport)
    config = endpoint(service, task, service_settings, task_settings, inference_id=inference_id)
    return create_backend(config, **options)


def aws_event_frame(headers: dict[str, str], payload: dict) -> bytes:
    """One message of AWS's binary event stream (``application/vnd.amazon.eventstream``):
    prelude, CRCs, string headers, JSON payload."""
    import binascii
    import struct

    body = json.dumps(payload).encode()
    encoded = b""
    for name, value in headers.items():
        encoded += struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    prelude = struct.pack(">II", 12 + len(encoded) + len(body) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + body
    return message + struct.pack(">I", binascii.crc32(message))


def aws_event(kind: str, payload: dict) -> bytes:
    return aws_event_frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload)


async def post_chat(backend, body: dict, path: str | None = None) -> httpx.Response:
    """Start ``backend`` behind ``kubeinfer serve``'s app and POST a unified chat request to it."""
    from model_server.api.serve import build_app

    app = build_app(backend.config, backend)
    await backend.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as http:
            return await http.post(path or f"/_inference/chat_completion/{backend.config.inference_id}/_stream",
                                   json=body)
    finally:
        await backend.close()
