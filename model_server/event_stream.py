"""Reading Server-Sent Events, line by line, as the HTML standard defines them.

Shared by the API layer (which reads back its own streams) and the provider adapters
(which read providers' streams). Knows nothing of either; writing events is the API's job.
"""

from __future__ import annotations

BOM = "\ufeff"


class EventStreamParser:
    """Feed it lines; it hands back ``(event, data)`` once an event is complete."""

    def __init__(self, default_event: str = "message") -> None:
        self.default_event = default_event
        self._event = ""
        self._data: list[str] = []

    def feed(self, raw: str) -> tuple[str, str] | None:
        # Elasticsearch writes a byte-order mark before every event, not only the first.
        line = raw.lstrip(BOM).rstrip("\r\n")
        if not line:
            return self.close()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def close(self) -> tuple[str, str] | None:
        """The event under way, if it has data; the parser is then ready for the next."""
        event, data = self._event or self.default_event, self._data
        self._event, self._data = "", []
        return (event, "\n".join(data)) if data else None
