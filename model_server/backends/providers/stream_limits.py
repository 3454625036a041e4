"""The limits a provider's stream is read under: how long it may last in all, how long it
may stay silent, and how long one of its lines (one event) may grow.

Without them a provider that never ends its stream, or sends one endless line, would
hold a connection and the server's memory for as long as it liked. ``LimitedStream``
wraps the body of a streamed ``httpx.Response`` and raises an ``ElasticsearchError``
(``408`` for time, ``502`` for a line too long) that ends the stream with an error event.

Lines are counted on the bytes as they come: streams are asked for without compression
(``Accept-Encoding: identity``), and one that comes compressed all the same is refused,
as a compressed line cannot be measured until it is decoded whole.
"""

from __future__ import annotations

import asyncio
import re
from typing import AsyncIterator

import httpx

from kubeinfer.errors import ElasticsearchError

_NEWLINE = re.compile(rb"[\r\n]")


class LimitedStream(httpx.AsyncByteStream):
    """``inner`` read for at most ``max_duration`` seconds in all, ``idle_timeout`` between
    chunks, with no line longer than ``max_line`` bytes."""

    def __init__(self, inner: httpx.AsyncByteStream, *, service: str, max_duration: float, idle_timeout: float,
                 max_line: int) -> None:
        self.inner, self.service = inner, service
        self.max_duration, self.idle_timeout, self.max_line = max_duration, idle_timeout, max_line
        self.line = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.max_duration
        chunks = self.inner.__aiter__()
        while True:
            left = ends - loop.time()
            try:
                async with asyncio.timeout(min(self.idle_timeout, left)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise self._timed_out(left <= self.idle_timeout) from None
            self._measure(chunk)
            yield chunk

    def _measure(self, chunk: bytes) -> None:
        parts = _NEWLINE.split(chunk)
        longest = max([self.line + len(parts[0])] + [len(part) for part in parts[1:]])
        self.line = len(parts[-1]) if len(parts) > 1 else self.line + len(chunk)
        if longest > self.max_line:
            raise ElasticsearchError(
                502, "status_exception",
                f"The stream of the [{self.service}] service sent a line longer than [{self.max_line}] bytes "
                "(KUBEINFER_PROVIDER_MAX_LINE_SIZE)",
            )

    def _timed_out(self, in_all: bool) -> ElasticsearchError:
        if in_all:
            reason = (f"The stream of the [{self.service}] service ran past [{self.max_duration:g}s] "
                      "(KUBEINFER_STREAM_MAX_DURATION)")
        else:
            reason = (f"The stream of the [{self.service}] service sent nothing for [{self.idle_timeout:g}s] "
                      "(KUBEINFER_STREAM_IDLE_TIMEOUT)")
        return ElasticsearchError(408, "status_exception", reason)

    async def aclose(self) -> None:
        await self.inner.aclose()


def compressed_stream_refused(service: str) -> ElasticsearchError:
    return ElasticsearchError(
        502, "status_exception", f"The [{service}] service compressed a stream that was asked for uncompressed")
