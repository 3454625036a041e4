"""A status line for slow starts on a terminal: what the process is doing (importing its
modules, loading or exporting a model) and for how long, rewritten in place each second
until the process serves.

Only where standard error is a terminal: in a pod or under a pipe nothing changes. What
the line says comes from the log: each record printed above it becomes its new text, so
the roles need no call of their own beyond ``finish`` once they serve. Everything else
written to standard error (log lines, uvicorn's, a download's progress bar) goes through
``StatusStream``, which takes the line away before the text and puts it back after.
Knows no role.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import Any, TextIO

_ERASE = "\r\x1b[K"


class StartupLine:
    """``<prog>: starting, 12 s: <what it does>`` on the last line of a terminal."""

    def __init__(self, prog: str, stream: TextIO, text: str = "importing modules") -> None:
        self.prog, self.text = prog, text
        self._stream = stream
        self._since = time.monotonic()
        self._lock = threading.RLock()
        self._active = True
        self._shown = False
        self._partial = False  # someone else's line is being written: wait for its end
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="startup-line", daemon=True)

    def start(self) -> "StartupLine":
        self._draw()
        self._ticker.start()
        return self

    def say(self, text: str) -> None:
        with self._lock:
            self.text = text
            self._draw()

    def finish(self) -> None:
        """Take the line away for good: the process serves."""
        with self._lock:
            self._erase()
            self._active = False
        self._stop.set()

    @property
    def active(self) -> bool:
        return self._active

    def write_through(self, text: str) -> int:
        """Write ``text`` above the line, which comes back once the text ends a line."""
        with self._lock:
            self._erase()
            written = self._stream.write(text)
            self._partial = bool(text) and not text.endswith("\n")
            self._draw()
            return written

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()

    def _render(self) -> str:
        line = f"{self.prog}: starting, {time.monotonic() - self._since:.0f} s: {self.text}"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        return line if len(line) <= width else line[:max(width - 1, 0)] + "…"

    def _draw(self) -> None:
        if not self._active or self._partial:
            return
        self._stream.write(_ERASE + self._render())
        self._stream.flush()
        self._shown = True

    def _erase(self) -> None:
        if self._shown:
            self._stream.write(_ERASE)
            self._stream.flush()
            self._shown = False


class StatusStream:
    """Standard error with a ``StartupLine`` under whatever is written to it."""

    def __init__(self, stream: TextIO, line: StartupLine) -> None:
        self._stream, self._line = stream, line

    def write(self, text: str) -> int:
        if not self._line.active:
            return self._stream.write(text)
        return self._line.write_through(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...
        return getattr(self._stream, name)


class StartupLogHandler(logging.Handler):
    """Makes each log record's message the line's text; prints nothing itself."""

    def __init__(self, line: StartupLine) -> None:
        super().__init__(logging.INFO)
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        if self.line.active:
            self.line.say(record.getMessage().splitlines()[0] if record.getMessage() else self.line.text)
