"""``OutboundHTTP``: every HTTP request the provider backends of a process send.

One object, made by the app that runs the backends (``kubeinfer serve``, local mode) from
the server's settings, opened on the serving loop at start-up and closed at shutdown. The
backends receive it when they are built; a backend built without one (a test, a
benchmark) makes and owns one of its own. It answers "which connection pool sends this
request?" in one place:

- ``https://`` (every provider's own API) goes through one ``httpx`` client, with HTTP/2
  negotiated by TLS ALPN wherever the provider offers it;
- ``http://`` (private endpoints, sidecar proxies, in-cluster gateways) cannot speak
  HTTP/2 without TLS, so it goes through one aiohttp HTTP/1.1 connection pool, which
  costs a fraction of the CPU per request of httpx's own (see ``bench/proxy.py``). A
  whole answer asked for without per-request credentials is read straight from aiohttp,
  without httpx's client layers; streams and requests that are signed or carry a token
  go through httpx with that same pool as its transport. Where the environment names a
  proxy for plain HTTP (``HTTP_PROXY``, ``ALL_PROXY``), ``http://`` goes through httpx's
  own transports instead, which honour it with ``NO_PROXY``.

Every URL is sent byte for byte as httpx writes it, on both paths: aiohttp is handed it
already encoded, so a signature computed over the escaped path (SigV4) still holds.

Every connection goes through ``connect_policy``: an address that is link-local or a
cloud metadata service's is refused after resolution, however the URL spelled it, unless
the server allows such addresses (``KUBEINFER_ALLOW_LINK_LOCAL_URLS``). No cookie is
kept: one endpoint's cookies must not go with another's requests. Answers are bounded: a
whole answer at ``max_answer`` bytes once decompressed (``AnswerTooLarge``), a stream at
``max_line`` bytes per line and the server's duration and idle limits
(``stream_limits``).

Deadlines are the caller's; the pools' own timeouts only bound connecting. This module
knows nothing of providers or of Elasticsearch's JSON.
"""

from __future__ import annotations

import contextlib
import functools
import urllib.request
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping

import aiohttp
import httpx
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict
from yarl import URL

from kubeinfer.config import ServerSettings
from .connect_policy import check_connections, checking_connector
from .stream_limits import LimitedStream, compressed_stream_refused

# Elasticsearch keeps 50 connections to providers in all; a proxy that only forwards can
# afford more, and many concurrent clients need them.
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=None)
# No aiohttp timeouts on whole-answer calls: the caller's deadline bounds the whole call.
_NO_TIMEOUT = aiohttp.ClientTimeout()
# How much of an answer of unknown length is read at once.
_CHUNK = 1 << 16

Authorize = Callable[[httpx.Request], Awaitable[None]]


class AnswerTooLarge(Exception):
    """A provider answer longer than the bytes the server reads of one."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than [{limit}] bytes")
        self.limit = limit


@dataclass(slots=True)
class Answer:
    """A provider's whole answer, its body already decoded: what is read of a response
    that is not streamed on."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


async def read_bounded(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The bytes of ``chunks``, refused with ``AnswerTooLarge`` once past ``limit``."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """aiohttp's failures as httpx's, as ``map_aiohttp_exceptions`` maps them, and what it
    misses: an answer whose head does not parse (too many header lines, a line too long, no
    status line), a ``RemoteProtocolError`` rather than an internal error."""
    try:
        with map_aiohttp_exceptions():
            yield
    except aiohttp.ClientResponseError as exc:
        raise httpx.RemoteProtocolError(f"malformed answer: {exc.message}") from None


class _Chunks(httpx.AsyncByteStream):
    """An aiohttp body as the stream of an ``httpx.Response``; failures as httpx's."""

    def __init__(self, response: aiohttp.ClientResponse, chunk_size: int = _CHUNK) -> None:
        self.response, self.chunk_size = response, chunk_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self.response.content.iter_chunked(self.chunk_size):
                yield chunk

    async def aclose(self) -> None:
        self.response.release()


class _PlainTransport(httpx.AsyncBaseTransport):
    """httpx's requests of ``http://`` URLs sent over the aiohttp pool, their URLs as
    httpx encoded them (aiohttp would otherwise normalise percent-escapes)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _httpx_errors():
            try:
                data: Any = request.content or None
            except httpx.RequestNotRead:
                data = request.stream
                request.headers.pop("transfer-encoding", None)  # aiohttp writes its own
            response = await self.session.request(
                request.method, URL(str(request.url), encoded=True), headers=request.headers, data=data,
                allow_redirects=False, auto_decompress=False, compress=False,
                timeout=aiohttp.ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                              connect=timeout.get("pool")),
            ).__aenter__()
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(response.status, headers=response.raw_headers, stream=_Chunks(response),
                              request=request, extensions=extensions)

    async def aclose(self) -> None:
        pass  # the session is OutboundHTTP's, closed with it


@functools.lru_cache(maxsize=1024)
def _as_httpx_writes_it(url: str) -> URL:
    """``url`` encoded as httpx encodes it, for aiohttp to send as it is. An endpoint calls
    the same few URLs again and again, and httpx's parser costs more than the rest of the
    call's own work, so the answers are remembered."""
    return URL(str(httpx.URL(url)), encoded=True)


def _env_proxies_plain_http() -> bool:
    """Whether the environment names a proxy for http:// URLs, as httpx reads it."""
    return bool({"http", "all"} & urllib.request.getproxies().keys())


def _without_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client


class OutboundHTTP:
    """The connection pools of a process's provider calls, the address policy their
    connections are made under, and the bounds their answers are read within, as the
    server's ``settings`` say.

    With ``transport`` every request goes to that httpx transport instead (a fake
    provider in tests); it is open from the start."""

    def __init__(self, settings: ServerSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_link_local = settings.allow_link_local_urls
        self.max_answer, self.max_line = int(settings.provider_max_answer_size), int(settings.provider_max_line_size)
        self.stream_max_duration, self.stream_idle_timeout = settings.stream_max_duration, settings.stream_idle_timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._plain_headers: CIMultiDict[str] | None = None
        if transport is not None:
            self._client = _without_cookies(httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT))

    # ---- life cycle -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._client is not None

    async def open(self) -> None:
        """Make the pools, bound to the running event loop; nothing if already open."""
        if self._client is not None:
            return
        if self._transport is not None:
            self._client = _without_cookies(httpx.AsyncClient(transport=self._transport, timeout=DEFAULT_TIMEOUT))
            return
        session = None
        if not _env_proxies_plain_http():
            limits = {"limit": POOL_LIMITS.max_connections or 0, "keepalive_timeout": POOL_LIMITS.keepalive_expiry}
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**limits) if self.allow_link_local else checking_connector(**limits),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            )
        client = _without_cookies(httpx.AsyncClient(
            http2=True, limits=POOL_LIMITS, timeout=DEFAULT_TIMEOUT, trust_env=True,
            mounts={"http://": _PlainTransport(session)} if session is not None else None,
        ))
        if not self.allow_link_local:
            # The default transport the client made (a transport given to it would turn off the
            # proxies the environment names); proxies' own transports connect to the proxy.
            check_connections(client._transport)
        if session is not None:
            self._plain_headers = CIMultiDict(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in client.headers.raw)
        self._client, self._session = client, session

    async def close(self) -> None:
        """Close the pools and their connections; ``open`` makes new ones."""
        client, session = self._client, self._session
        self._client = self._session = self._plain_headers = None
        if client is not None:
            await client.aclose()
        if session is not None:
            await session.close()

    async def __aenter__(self) -> "OutboundHTTP":
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def client(self) -> httpx.AsyncClient:
        """The httpx client under it, for a call that builds its own request (a token exchange)."""
        if self._client is None:
            raise RuntimeError("the outbound HTTP pools are not open: the serving app opens them at start-up")
        return self._client

    # ---- requests ---------------------------------------------------------------------
    async def send(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None = None,
        *,
        deadline_in: float | None,
        authorize: Authorize | None = None,
        stream: bool = False,
        service: str = "",
    ) -> Answer | httpx.Response:
        """One request: its whole answer as an ``Answer``; or, with ``stream``, a successful
        answer as a streaming ``httpx.Response`` read under the stream limits (``service``
        names the provider in their errors) and any other answer read whole.

        ``authorize`` adds credentials to the built request (a token, a signature over it);
        ``deadline_in`` is the seconds left for the whole call. Failures to connect or read
        raise ``httpx.TransportError``s; a forbidden address ``url_policy.ForbiddenAddress``."""
        client = self.client
        if stream:
            headers = {**(headers or {}), "Accept-Encoding": "identity"}
        elif authorize is None and self._session is not None and url.startswith("http://"):
            return await self._fetch_plain(method, url, content, headers, params)
        outgoing = client.build_request(method, url, content=content, headers=headers, params=params,
                                        timeout=httpx.Timeout(None if deadline_in is None else max(0.001, deadline_in)))
        if content is not None and "Content-Type" not in outgoing.headers:
            outgoing.headers["Content-Type"] = "application/json"
        if authorize is not None:
            await authorize(outgoing)
        response = await client.send(outgoing, stream=True)
        if not stream or not response.is_success:
            try:
                return Answer(response.status_code, response.headers,
                              await read_bounded(response.aiter_bytes(), self.max_answer))
            finally:
                await response.aclose()
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            await response.aclose()
            raise compressed_stream_refused(service)
        response.stream = LimitedStream(response.stream, service=service, max_duration=self.stream_max_duration,
                                        idle_timeout=self.stream_idle_timeout, max_line=self.max_line)
        return response

    async def _fetch_plain(self, method: str, url: str, content: bytes | None, headers: Mapping[str, str] | None,
                           params: Mapping[str, str] | None) -> Answer:
        """A whole answer of an http:// URL straight from aiohttp, sent as httpx would send it."""
        assert self._session is not None and self._plain_headers is not None
        target = (URL(str(httpx.URL(url).copy_merge_params(params)), encoded=True) if params
                  else _as_httpx_writes_it(url))
        outgoing = self._plain_headers.copy()
        if headers:
            outgoing.update(headers)
        if content is not None and "Content-Type" not in outgoing:
            outgoing["Content-Type"] = "application/json"
        limit = self.max_answer
        try:
            async with self._session.request(method, target, data=content, headers=outgoing, allow_redirects=False,
                                             timeout=_NO_TIMEOUT) as response:
                length = response.content_length
                if length is not None and length > limit:
                    raise AnswerTooLarge(limit)
                if "Content-Encoding" in response.headers:
                    # Decoded as httpx decodes what it asked for with its own Accept-Encoding, a
                    # piece at a time: a small compressed answer may be a huge one.
                    decoded = httpx.Response(response.status, headers=response.raw_headers,
                                             stream=_Chunks(response))
                    body = await read_bounded(decoded.aiter_bytes(), limit)
                elif length is not None:
                    body = await response.read()
                else:
                    body = await read_bounded(response.content.iter_chunked(_CHUNK), limit)
        except (AnswerTooLarge, httpx.TransportError):
            raise
        except Exception:
            with _httpx_errors():
                raise
        return Answer(response.status, response.headers, body)

