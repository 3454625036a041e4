"""The HTTP clients shared by every provider backend of a process.

One ``httpx.AsyncClient`` per event loop, pooling connections across endpoints:

- ``https://`` (every provider's own API) goes through httpx's transport with HTTP/2,
  negotiated by TLS ALPN wherever the provider offers it;
- ``http://`` (private endpoints, sidecar proxies, in-cluster gateways) cannot speak
  HTTP/2 without TLS, so it goes through aiohttp's HTTP/1.1 connection pool, which costs
  a fraction of the CPU per request of httpx's own (see ``bench/proxy.py``).

``shared_client(exact_urls=True)`` is a second client that sends every URL byte for byte
as given (httpx's own transport on both schemes): aiohttp normalises percent-escapes in
paths, which would break a signature computed over the escaped path (SigV4).

Per-request deadlines are set by the caller; the clients' own timeouts only bound
connecting. This module knows nothing of providers or of Elasticsearch.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

# Elasticsearch keeps 50 connections to providers in all; a proxy that only forwards can
# afford more, and many concurrent clients need them.
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=None)

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, httpx.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)
# How many backends hold each shared client; the last one to let go closes it.
_holders: "weakref.WeakKeyDictionary[httpx.AsyncClient, int]" = weakref.WeakKeyDictionary()


def _plain_http_transport() -> httpx.AsyncBaseTransport | None:
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:  # without it, httpx's own transport serves http:// too
        return None
    return AiohttpTransport(limits=POOL_LIMITS, trust_env=True)


def new_client(transport: httpx.AsyncBaseTransport | None = None, *, exact_urls: bool = False) -> httpx.AsyncClient:
    """A client configured as the shared one; with ``transport`` it talks to that instead."""
    if transport is not None:
        return httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT)
    plain = None if exact_urls else _plain_http_transport()
    return httpx.AsyncClient(
        http2=True,
        limits=POOL_LIMITS,
        timeout=DEFAULT_TIMEOUT,
        trust_env=True,
        mounts={"http://": plain} if plain is not None else None,
    )


def shared_client(*, exact_urls: bool = False) -> httpx.AsyncClient:
    """The running event loop's shared client, created on first use."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(exact_urls)
    if client is None or client.is_closed:
        client = clients[exact_urls] = new_client(exact_urls=exact_urls)
    return client


def hold_shared_client(*, exact_urls: bool = False) -> httpx.AsyncClient:
    """The shared client, counted as held until ``release_shared_client``."""
    client = shared_client(exact_urls=exact_urls)
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
