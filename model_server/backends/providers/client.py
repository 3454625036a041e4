"""The HTTP clients shared by every provider backend of a process.

One ``httpx.AsyncClient`` per event loop, pooling connections across endpoints:

- ``https://`` (every provider's own API) goes through httpx's transport with HTTP/2,
  negotiated by TLS ALPN wherever the provider offers it;
- ``http://`` (private endpoints, sidecar proxies, in-cluster gateways) cannot speak
  HTTP/2 without TLS, so it goes through aiohttp's HTTP/1.1 connection pool, which costs
  a fraction of the CPU per request of httpx's own (see ``bench/proxy.py``).

``PlainHTTP`` sends a whole request over that same aiohttp pool without httpx's client
layers (request building, auth, redirects, cookies), which cost more CPU than aiohttp
itself: the proxy's one-shot JSON calls of plain-http URLs go that way. Where the
environment names a proxy for plain HTTP (``HTTP_PROXY``, ``ALL_PROXY``), http:// goes
through httpx's own transports instead, which honour it with ``NO_PROXY``.

Every connection they open goes through ``connect_policy``: an address that is link-local
or a cloud metadata service's is refused however the URL spelled it, unless the server
allows such addresses (``KUBEINFER_ALLOW_LINK_LOCAL_URLS``), which gets clients of its own.

Neither client keeps cookies: a proxy serving many endpoints must not send one
endpoint's cookies with another's requests.

``shared_client(exact_urls=True)`` is a second client that sends every URL byte for byte
as given (httpx's own transport on both schemes): aiohttp normalises percent-escapes in
paths, which would break a signature computed over the escaped path (SigV4).

``read_bounded`` reads an answer up to a number of bytes (decompressed), and
``PlainHTTP`` never reads more: a provider's answer must not take the server's memory.

Per-request deadlines are set by the caller; the clients' own timeouts only bound
connecting. This module knows nothing of providers or of Elasticsearch.
"""

from __future__ import annotations

import asyncio
import urllib.request
import weakref
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import AsyncIterator, Mapping

import httpx

from .connect_policy import check_connections, checking_connector

try:
    import aiohttp
    from multidict import CIMultiDict
    from httpx_aiohttp import AiohttpTransport
    from httpx_aiohttp.transport import map_aiohttp_exceptions
except ImportError:  # without them, httpx's own transport serves http:// too
    aiohttp = AiohttpTransport = CIMultiDict = map_aiohttp_exceptions = None  # type: ignore[assignment,misc]

# Elasticsearch keeps 50 connections to providers in all; a proxy that only forwards can
# afford more, and many concurrent clients need them.
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=None)

# Per loop, one client per (exact_urls, allow_link_local).
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[bool, bool], httpx.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)
# How many backends hold each shared client; the last one to let go closes it.
_holders: "weakref.WeakKeyDictionary[httpx.AsyncClient, int]" = weakref.WeakKeyDictionary()


# No aiohttp timeouts on PlainHTTP calls: the caller's deadline bounds the whole call.
_NO_TIMEOUT = aiohttp.ClientTimeout() if aiohttp is not None else None
# The plain-http path of each shared client that has one.
_plain: "weakref.WeakKeyDictionary[httpx.AsyncClient, PlainHTTP]" = weakref.WeakKeyDictionary()


# How much of an answer of unknown length is read at once.
_CHUNK = 1 << 16


class AnswerTooLarge(Exception):
    """A provider answer longer than the bytes the server reads of one."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than [{limit}] bytes")
        self.limit = limit


async def read_bounded(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The bytes of ``chunks``, refused with ``AnswerTooLarge`` once past ``limit``."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


class _Chunks(httpx.AsyncByteStream):
    """An aiohttp body as the stream of an ``httpx.Response``, so that httpx decodes it piece by piece."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk


@dataclass(slots=True)
class Answer:
    """A provider's whole answer read by ``PlainHTTP``: what the proxy reads of an
    ``httpx.Response``, its body already decoded."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class PlainHTTP:
    """One-shot requests of http:// URLs over the aiohttp session a shared client mounts,
    sent with the headers that client would add; failures raise the ``httpx`` exceptions
    its transport would have raised."""

    def __init__(self, session: "aiohttp.ClientSession", default_headers: httpx.Headers) -> None:
        self.session = session
        self.default_headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in default_headers.raw)

    async def send(self, method: str, url: str, content: bytes | None, headers: Mapping[str, str] | None,
                   params: Mapping[str, str] | None = None, *, max_size: int) -> Answer:
        """The whole answer, at most ``max_size`` bytes of it once decoded (else ``AnswerTooLarge``)."""
        if params:  # encoded as httpx encodes them
            url = str(httpx.URL(url).copy_merge_params(params))
        outgoing = self.default_headers.copy()
        if headers:
            outgoing.update(headers)
        if content is not None and "Content-Type" not in outgoing:
            outgoing["Content-Type"] = "application/json"
        try:
            async with self.session.request(method, url, data=content, headers=outgoing, allow_redirects=False,
                                            timeout=_NO_TIMEOUT) as response:
                length = response.content_length
                if length is not None and length > max_size:
                    raise AnswerTooLarge(max_size)
                if "Content-Encoding" in response.headers:
                    # Decoded as httpx decodes what it asked for with its own Accept-Encoding, a
                    # piece at a time: a small compressed answer may be a huge one.
                    decoded = httpx.Response(response.status, headers=response.raw_headers,
                                             stream=_Chunks(response.content.iter_chunked(_CHUNK)))
                    body = await read_bounded(decoded.aiter_bytes(), max_size)
                elif length is not None:
                    body = await response.read()
                else:
                    body = await read_bounded(response.content.iter_chunked(_CHUNK), max_size)
        except AnswerTooLarge:
            raise
        except aiohttp.ClientResponseError as exc:  # the answer's head did not parse
            raise _malformed(exc) from None
        except Exception:
            with map_aiohttp_exceptions():
                raise
        return Answer(response.status, response.headers, body)


def _malformed(exc: "aiohttp.ClientResponseError") -> httpx.RemoteProtocolError:
    """What httpx raises for an answer that is not HTTP, for what aiohttp raises for one
    (too many header lines, a line too long, no status line), which its mapping misses."""
    return httpx.RemoteProtocolError(f"malformed answer: {exc.message}")


class _Transport(AiohttpTransport if AiohttpTransport is not None else object):  # type: ignore[misc]
    """httpx's transport over aiohttp, a malformed answer raised as httpx raises one."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientResponseError as exc:
            raise _malformed(exc) from None


def plain_http(client: httpx.AsyncClient) -> PlainHTTP | None:
    """The plain-http path of a shared client; None for any other client."""
    return _plain.get(client)


def _plain_http_session(allow_link_local: bool) -> "aiohttp.ClientSession":
    limits = {"limit": POOL_LIMITS.max_connections or 0, "keepalive_timeout": POOL_LIMITS.keepalive_expiry}
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(**limits) if allow_link_local else checking_connector(**limits),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


def _env_proxies_plain_http() -> bool:
    """Whether the environment names a proxy for http:// URLs, as httpx reads it."""
    return bool({"http", "all"} & urllib.request.getproxies().keys())


def _without_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client


def new_client(transport: httpx.AsyncBaseTransport | None = None, *, exact_urls: bool = False,
               allow_link_local: bool = False) -> httpx.AsyncClient:
    """A client configured as the shared one; with ``transport`` it talks to that instead.

    Without ``transport`` it must be created on the event loop that will use it."""
    if transport is not None:
        return _without_cookies(httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT))
    session = None if exact_urls or AiohttpTransport is None or _env_proxies_plain_http() \
        else _plain_http_session(allow_link_local)
    client = _without_cookies(httpx.AsyncClient(
        http2=True,
        limits=POOL_LIMITS,
        timeout=DEFAULT_TIMEOUT,
        trust_env=True,
        mounts={"http://": _Transport(limits=POOL_LIMITS, client=session)} if session is not None else None,
    ))
    if not allow_link_local:
        # The default transport the client made (a transport given to it would turn off the
        # proxies the environment names); proxies' own transports connect to the proxy.
        check_connections(client._transport)
    if session is not None:
        _plain[client] = PlainHTTP(session, client.headers)
    return client


def shared_client(*, exact_urls: bool = False, allow_link_local: bool = False) -> httpx.AsyncClient:
    """The running event loop's shared client, created on first use."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    key = (exact_urls, allow_link_local)
    client = clients.get(key)
    if client is None or client.is_closed:
        client = clients[key] = new_client(exact_urls=exact_urls, allow_link_local=allow_link_local)
    return client


def hold_shared_client(*, exact_urls: bool = False, allow_link_local: bool = False) -> httpx.AsyncClient:
    """The shared client, counted as held until ``release_shared_client``."""
    client = shared_client(exact_urls=exact_urls, allow_link_local=allow_link_local)
    _holders[client] = _holders.get(client, 0) + 1
    return client


async def release_shared_client(client: httpx.AsyncClient) -> None:
    """Let go of a held shared client; the last holder closes it (and its pool)."""
    count = _holders.get(client, 0) - 1
    if count > 0:
        _holders[client] = count
        return
    _holders.pop(client, None)
    for clients in _clients.values():
        for key, value in list(clients.items()):
            if value is client:
                del clients[key]
    await client.aclose()
