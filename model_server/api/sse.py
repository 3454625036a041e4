"""Server-Sent Events exactly as Elasticsearch's streaming inference API writes them.

Each event is a byte-order mark, ``event: message`` (or ``event: error``), one
``data:`` line of compact JSON and a blank line; the stream ends with
``data: [DONE]``. Elasticsearch writes the byte-order mark before every event, so a
reader must drop it wherever it appears (``parse_events`` does).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterable, Iterator

from ..event_stream import BOM, EventStreamParser
from .deadline import deadline

MESSAGE = "message"
ERROR = "error"
DONE = "[DONE]"
MEDIA_TYPE = "text/event-stream"


# What ``first_chunk`` answers for a stream that ended before its first chunk.
END = object()


async def first_chunk(chunks: AsyncIterator[Any], timeout: float) -> Any:
    """The first chunk of a stream, awaited before the answer starts so that an error
    before any output gets its own HTTP status; ``END`` for an empty stream."""
    try:
        async with deadline(timeout):
            return await anext(chunks)
    except StopAsyncIteration:
        return END


def encode_event(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{BOM}event: {event}\ndata: {payload}\n\n".encode("utf-8", "backslashreplace")


def message_event(chunk: dict[str, Any]) -> bytes:
    return encode_event(MESSAGE, chunk)


def error_event(body: dict[str, Any]) -> bytes:
    return encode_event(ERROR, body)


def done_event() -> bytes:
    return encode_event(MESSAGE, DONE)


def parse_events(text: str | Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` pairs from a stream's text (or its lines)."""
    lines = text.splitlines() if isinstance(text, str) else text
    parser = EventStreamParser(MESSAGE)
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
    if (event := parser.close()) is not None:
        yield event
