"""The URL policy applied where it cannot be fooled: on the address a provider connection
is about to be made to, after name resolution.

A URL's spelling does not say where it leads: ``http://0xa9fea9fe/``,
``http://2852039166/``, ``http://169.254.43518/`` and a name such as
``169.254.169.254.nip.io`` all reach the cloud metadata service, and a check of the text
(``url_policy``) cannot know every spelling or any name. So each client a provider
backend uses gets a hook that sees every resolved address before a socket connects to
it, and refuses the connection with ``ForbiddenAddress`` (not an ``OSError``, which the
clients would take for a failure worth another address or another try):

- aiohttp, under the ``http://`` transport: a resolver that refuses a name when one of
  its addresses is forbidden, and a socket factory that refuses the address of each
  socket about to connect (an IP literal skips the resolver);
- httpcore, under the ``https://`` transport: a network backend that resolves the name
  itself, refuses it likewise, and connects to the addresses it checked, so that what was
  checked is what is dialled (TLS still verifies the name).

This module knows nothing of providers or of Elasticsearch.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Iterable

import httpcore

from ..url_policy import ForbiddenAddress, forbidden_address

try:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult
except ImportError:  # the http:// transport is httpx's own then, checked by the network backend
    aiohttp = None  # type: ignore[assignment]
    AbstractResolver = object  # type: ignore[assignment,misc]
    ResolveResult = dict  # type: ignore[assignment,misc]


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Refuse ``host`` when one of the addresses it resolves to is forbidden."""
    for address in addresses:
        if forbidden_address(address):
            raise ForbiddenAddress(host, address)


class CheckingResolver(AbstractResolver):
    """aiohttp's default resolver, refusing names that resolve to a forbidden address."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_addresses(host, (result["host"] for result in results))
        return results

    async def close(self) -> None:
        await self._inner.close()


def checking_socket_factory(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket for one address, refused when the address is forbidden."""
    family, type_, proto, _, address = addr_info
    check_addresses(str(address[0]), [str(address[0])])
    return socket.socket(family=family, type=type_, proto=proto)


def checking_connector(**options: Any) -> "aiohttp.TCPConnector":
    """An aiohttp connector that connects to allowed addresses only."""
    return aiohttp.TCPConnector(resolver=CheckingResolver(), socket_factory=checking_socket_factory, **options)


class CheckingNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking each name before it connects."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving [{host}] timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        check_addresses(host, addresses)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # getaddrinfo answers at least one address or raises
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def check_connections(transport: Any) -> Any:
    """``transport`` (an ``httpx.AsyncHTTPTransport``) connecting through ``CheckingNetworkBackend``.

    httpx takes no network backend, so it is set on the pool it made; connections are
    opened lazily, each with the pool's backend."""
    pool = transport._pool
    if isinstance(pool, httpcore.AsyncConnectionPool) and not isinstance(pool, (httpcore.AsyncHTTPProxy,
                                                                                 httpcore.AsyncSOCKSProxy)):
        pool._network_backend = CheckingNetworkBackend(pool._network_backend)
    return transport
