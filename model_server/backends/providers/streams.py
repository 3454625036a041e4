"""Readers for the streaming formats providers answer with.

``server_sent_events`` yields ``(event, data)`` pairs per the WHATWG rules (``data``
lines joined by newlines, comments skipped); ``json_lines`` yields one parsed object
per non-empty line (Cohere's v1 chat stream).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import httpx

from kubeinfer import strict_json
from ...event_stream import EventStreamParser


def ended_early(marker: str) -> ValueError:
    """A stream that stopped before the provider's end marker: cut off, not complete.

    A ``ValueError``, so that the provider backend reports it as an answer it could not read."""
    return ValueError(f"the stream ended before its end marker [{marker}]: the answer is incomplete")


async def server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    parser = EventStreamParser()
    async for line in response.aiter_lines():
        if (event := parser.feed(line)) is not None:
            yield event
    if (event := parser.close()) is not None:
        yield event


async def json_lines(response: httpx.Response) -> AsyncIterator[Any]:
    async for line in response.aiter_lines():
        line = line.strip()
        if line:
            yield strict_json.loads(line)
