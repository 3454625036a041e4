"""Where an endpoint may send requests (and the credentials they carry).

A provider URL given in an endpoint's settings (``url``, ``streaming_url``, ``target``,
``host``) must not point at a link-local address (``169.254.0.0/16``, ``fe80::/10``) or
a cloud metadata service (``fd00:ec2::254``, ``metadata.google.internal``): there a
request reads the node's own cloud credentials rather than reaching a provider. The
server setting ``KUBEINFER_ALLOW_LINK_LOCAL_URLS=true`` lifts the rule for a network
that really serves a provider there.

Pure: no I/O, no DNS lookups (names are refused only when they are known metadata names).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import validation_exception

URL_SETTINGS = ("url", "streaming_url", "target", "host")
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


def _host(value: str) -> str:
    text = value.strip()
    parsed = urlsplit(text if "//" in text else f"//{text}")
    return (parsed.hostname or "").rstrip(".").lower()


def forbidden_host(value: str) -> bool:
    """Whether a URL (or bare host) points at a link-local or metadata address."""
    host = _host(value)
    if host in METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA_ADDRESSES


def check_urls(config: InferenceEndpointConfig, *, allow_link_local: bool = False) -> None:
    """Refuse ``config`` when one of its URL settings points where no provider should be."""
    if allow_link_local:
        return
    settings: Any = config.service_settings
    for name in URL_SETTINGS:
        value = getattr(settings, name, None)
        if isinstance(value, str) and forbidden_host(value):
            raise validation_exception(
                f"[service_settings] [{name}] points at a link-local or cloud metadata address, where no provider "
                "is served; set KUBEINFER_ALLOW_LINK_LOCAL_URLS=true on the server to allow it"
            )
