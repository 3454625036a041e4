"""The HTTP client shared by every provider backend of a process.

One ``httpx.AsyncClient`` per event loop: connections are pooled across endpoints and
providers, HTTP/2 is used where the provider offers it (negotiated by TLS ALPN; plain
``http://`` URLs stay on HTTP/1.1). Per-request deadlines are set by the caller; the
client's own timeouts only bound connecting and pool waits.

This module knows nothing of providers or of Elasticsearch.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

# Elasticsearch keeps 50 connections to providers in all; a proxy that only forwards can
# afford more, and many concurrent clients need them.
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=None)

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client configured as the shared one; with ``transport`` it talks to that instead."""
    if transport is not None:
        return httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT)
    return httpx.AsyncClient(http2=True, limits=POOL_LIMITS, timeout=DEFAULT_TIMEOUT, trust_env=True)


def shared_client() -> httpx.AsyncClient:
    """The running event loop's shared client, created on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = new_client()
        _clients[loop] = client
    return client


async def close_shared_client() -> None:
    """Close the running loop's shared client (at server shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
