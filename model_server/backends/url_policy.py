"""Where an endpoint may send requests (and the credentials they carry).

A provider URL given in an endpoint's settings (those the catalog declares with
``UrlField``: ``url``, ``streaming_url``, ``target``, ``host``) must not point at a
link-local address (``169.254.0.0/16``, ``fe80::/10``) or a cloud metadata service
(``fd00:ec2::254``, ``metadata.google.internal``): there a request reads the node's own
cloud credentials rather than reaching a provider. The server setting
``KUBEINFER_ALLOW_LINK_LOCAL_URLS=true`` lifts the rule for a network that really serves
a provider there.

Two checks hold the rule. Here, at creation, the URL's text: its host refused when it is a
known metadata name or an address in any spelling the C library reads (``0xa9fea9fe``,
``2852039166``, ``0251.0376.0251.0376``, ``169.254.43518``). Then, whatever the spelling
or the name, at connect time (``providers.connect_policy``): every address a name
resolves to is checked with ``forbidden_address`` before a socket connects to it.

Pure: no I/O, no DNS lookups.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import validation_exception

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
# IPv6 prefixes that carry an IPv4 address a network may route to: NAT64's well-known prefix.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What inet_aton reads as an IPv4 address: one to four parts, decimal, octal or hex.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


class ForbiddenAddress(Exception):
    """A connection about to be made to a link-local or metadata address."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"Refused to connect to [{host}]: it resolves to [{address}], a link-local or cloud metadata address, "
            "where no provider is served; set KUBEINFER_ALLOW_LINK_LOCAL_URLS=true on the server to allow it"
        )
        self.host, self.address = host, address


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` spells, in any form a connection would read it; None for a name."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def forbidden_address(text: str) -> bool:
    """Whether an IP address (in any spelling) is link-local or a cloud metadata service's."""
    address = _address(text.lower())
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and forbidden_address(str(embedded)):
            return True
    return address.is_link_local or address in _METADATA_ADDRESSES


def _host(value: str) -> str:
    text = value.strip()
    parsed = urlsplit(text if "//" in text else f"//{text}")
    return (parsed.hostname or "").rstrip(".").lower()


def forbidden_host(value: str) -> bool:
    """Whether a URL (or bare host) points at a link-local or metadata address."""
    host = _host(value)
    return host in METADATA_HOSTS or forbidden_address(host)


def check_urls(config: InferenceEndpointConfig, *, allow_link_local: bool = False) -> None:
    """Refuse ``config`` when one of its URL settings points where no provider should be."""
    if allow_link_local:
        return
    for name, value in config.url_settings().items():
        if forbidden_host(value):
            raise validation_exception(
                f"[service_settings] [{name}] points at a link-local or cloud metadata address, where no provider "
                "is served; set KUBEINFER_ALLOW_LINK_LOCAL_URLS=true on the server to allow it"
            )
