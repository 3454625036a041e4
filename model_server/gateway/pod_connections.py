"""Keep-alive HTTP/1.1 connections to endpoint servers: the client under the gateway's relay.

A request goes out as one write (its head and a body in hand) or with a chunked body as
the caller streams it; the answer is read with httptools, the parser uvicorn serves with,
into its status, raw headers and body bytes, handed on as they arrive. Connections are
kept per server and reused. A request that fails on a reused connection before any byte of
its answer came (the server closed it while it was idle) is sent once more on a new one
when its body is in hand. Every wait for the server is bounded: connecting by
``connect_timeout``, each read by the caller's limit.

Written for the relay's one job, so that a relayed request costs the gateway less than
the endpoint's own answer: a general client's request and response objects, hooks and
cookie handling cost several times more CPU than these bytes in and out. This module
knows HTTP/1.1 and nothing of inference.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator
from urllib.parse import urlsplit

import httptools


class PodUnreachable(Exception):
    """The server could not be reached, or broke the exchange off."""


class PodSilent(Exception):
    """The server sent nothing within the read limit."""


@dataclass(frozen=True)
class PodAddress:
    """Where a server listens, parsed once from its root URL."""

    host: str
    port: int
    tls: bool
    host_header: bytes

    @classmethod
    def parse(cls, root: str) -> "PodAddress":
        parts = urlsplit(root)
        tls = parts.scheme == "https"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if tls else 80)
        return cls(host, port, tls, parts.netloc.encode("idna"))


# Past this much of an answer waiting for its reader, the connection stops reading.
_HIGH_WATER = 1 << 20
# The most bytes of an answer's status line and headers read before they end: a server that
# never ends them must not take the gateway's memory until the request's deadline.
MAX_HEAD = 64 * 1024


class _Connection(asyncio.Protocol):
    """One connection: the exchange in flight on it and the parser of its answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        # The pool's list this connection waits in while idle; it leaves it when the server closes it.
        self.idle_in: list[_Connection] | None = None
        # The exchange in flight.
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.started = False  # a byte of the answer came
        self.head_read = 0  # bytes read while the answer's head had not ended
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.paused = False

    # ---- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(PodUnreachable(f"bad HTTP answer: {exc}"))
            self.close()
            return
        if not self.status:  # the head goes on
            self.head_read += len(data)
            if self.head_read > MAX_HEAD:
                self._fail(PodUnreachable(f"the answer's headers go on past {MAX_HEAD} bytes"))
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_in is not None:
            self.idle_in.remove(self)
            self.idle_in = None
        if not self.complete:
            self._fail(PodUnreachable("the connection was closed"))
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # ---- httptools' callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # ---- the exchange ---------------------------------------------------------------------
    def begin(self) -> None:
        self.status, self.headers = 0, []
        self.parts.clear()
        self.buffered = 0
        self.started = self.complete = self.keep_alive = False
        self.head_read = 0
        self.error = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    async def wait(self, limit: float | None) -> None:
        """Until the answer moves on (more of it, its end, or a failure)."""
        if self.error is not None:
            raise self.error
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(limit):
                await self.waiter
        except TimeoutError:
            raise PodSilent() from None
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        part = self.parts.popleft()
        self.buffered -= len(part)
        if self.paused and self.buffered < _HIGH_WATER // 4 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return part

    async def drain(self) -> None:
        if self.writable is not None:
            await self.writable
        if self.closed:
            raise PodUnreachable("the connection was closed")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class PodAnswer:
    """An answer as it comes: status and raw headers at once, the body read whole or in
    pieces; ``release`` hands the connection back (or closes it, unless fully read)."""

    def __init__(self, pool: "PodConnections", address: PodAddress, connection: _Connection,
                 limit: float | None) -> None:
        self._pool, self._address, self._connection, self._limit = pool, address, connection, limit
        self.status = connection.status
        self.headers = connection.headers

    async def read(self) -> bytes:
        connection = self._connection
        parts: list[bytes] = []
        while True:
            # Taken as they come: past its high water the connection stops reading until
            # what it buffered is taken, and an answer larger than that would never end.
            while connection.parts:
                parts.append(connection.take())
            if connection.complete:
                return b"".join(parts)
            await connection.wait(self._limit)

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                while connection.parts:
                    yield connection.take()
                if connection.complete:
                    return
                await connection.wait(self._limit)
        finally:
            self.release()

    def release(self) -> None:
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is not None:
            self._pool.give_back(self._address, connection)


class PodConnections:
    """Keep-alive connections to endpoint servers, a pool per server."""

    def __init__(self, *, keepalive: float = 4.0, idle_per_server: int = 256, connect_timeout: float = 5.0) -> None:
        """``keepalive``: how long an idle connection is kept, under uvicorn's own 5 s."""
        self.keepalive, self.idle_per_server, self.connect_timeout = keepalive, idle_per_server, connect_timeout
        self._idle: dict[PodAddress, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(self, address: PodAddress, method: str, target: str, headers: list[tuple[bytes, bytes]],
                      body: bytes | AsyncIterable[bytes], limit: float | None) -> PodAnswer:
        """Send a request (``target``: path and query string) and await its answer's head;
        each read waits at most ``limit`` seconds (None: no limit)."""
        head = [f"{method} {target} HTTP/1.1\r\nHost: ".encode("latin-1"), address.host_header, b"\r\n"]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if isinstance(body, bytes):
            head += (b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body)
            message = b"".join(head)
            connection = self._reused(address)
            if connection is not None:
                try:
                    return await self._exchange(address, connection, message, None, limit)
                except PodUnreachable:
                    if connection.started:
                        raise
            return await self._exchange(address, await self._connect(address), message, None, limit)
        head.append(b"Transfer-Encoding: chunked\r\n\r\n")
        connection = self._reused(address) or await self._connect(address)
        return await self._exchange(address, connection, b"".join(head), body, limit)

    async def _exchange(self, address: PodAddress, connection: _Connection, message: bytes,
                        stream: AsyncIterable[bytes] | None, limit: float | None) -> PodAnswer:
        connection.begin()
        try:
            if connection.closed or connection.transport is None:
                raise PodUnreachable("the connection was closed")
            connection.transport.write(message)
            if stream is not None:
                async for chunk in stream:
                    if chunk:
                        connection.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                        await connection.drain()
                connection.transport.write(b"0\r\n\r\n")
            while not connection.status and not connection.complete:
                await connection.wait(limit)
        except BaseException:
            connection.close()
            raise
        return PodAnswer(self, address, connection, limit)

    def _reused(self, address: PodAddress) -> _Connection | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            connection.idle_in = None
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection
            connection.close()
        return None

    async def _connect(self, address: PodAddress) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if address.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(_Connection, address.host, address.port, ssl=tls)
        except (OSError, TimeoutError) as exc:
            raise PodUnreachable(f"cannot connect: {type(exc).__name__}") from None
        return connection

    def give_back(self, address: PodAddress, connection: _Connection) -> None:
        """A connection whose answer was read to its end goes back to the pool; else it is closed."""
        if connection.closed or not connection.complete or not connection.keep_alive or connection.paused:
            connection.close()
            return
        idle = self._idle.setdefault(address, [])
        if len(idle) >= self.idle_per_server:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        connection.idle_in = idle
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in list(idle):
                connection.idle_in = None
                connection.close()
        self._idle.clear()
