"""Readers for the streaming formats providers answer with.

``server_sent_events`` yields ``(event, data)`` pairs per the WHATWG rules (``data``
lines joined by newlines, comments skipped); ``json_lines`` yields one parsed object
per non-empty line (Cohere's v1 chat stream).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx


async def server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    event, data = "", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


async def json_lines(response: httpx.Response) -> AsyncIterator[Any]:
    async for line in response.aiter_lines():
        line = line.strip()
        if line:
            yield json.loads(line)
