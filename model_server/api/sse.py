"""Server-Sent Events exactly as Elasticsearch's streaming inference API writes them.

Each event is a byte-order mark, ``event: message`` (or ``event: error``), one
``data:`` line of compact JSON and a blank line; the stream ends with
``data: [DONE]``. Elasticsearch writes the byte-order mark before every event, so a
reader must drop it wherever it appears (``parse_events`` does).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

BOM = "\ufeff"
MESSAGE = "message"
ERROR = "error"
DONE = "[DONE]"
MEDIA_TYPE = "text/event-stream"


def encode_event(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{BOM}event: {event}\ndata: {payload}\n\n".encode("utf-8")


def message_event(chunk: dict[str, Any]) -> bytes:
    return encode_event(MESSAGE, chunk)


def error_event(body: dict[str, Any]) -> bytes:
    return encode_event(ERROR, body)


def done_event() -> bytes:
    return encode_event(MESSAGE, DONE)


def parse_events(text: str | Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` pairs from a stream's text (or its lines)."""
    lines = text.splitlines() if isinstance(text, str) else text
    event, data = "", []
    for raw in lines:
        line = raw.lstrip(BOM).rstrip("\r\n")
        if not line:
            if data:
                yield event or MESSAGE, "\n".join(data)
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
        yield event or MESSAGE, "\n".join(data)
