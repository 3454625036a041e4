"""A small asynchronous Kubernetes API client for the operator's own writes.

kopf watches and patches the InferenceEndpoints; this client applies the objects that
serve them (server-side apply with the operator's field manager), reads Secrets and
Deployments, and writes the endpoints' status. It uses the connection kopf logged in
with (``kopf.ConnectionInfo``), so both share one identity. It knows no builders.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from typing import Any, Callable, Mapping

import aiohttp
import kopf

FIELD_MANAGER = "kubeinfer-operator"

# kind -> (API path prefix, plural)
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "InferenceEndpoint": ("/apis/kubeinfer.io/v1alpha1", "inferenceendpoints"),
}


class KubeError(Exception):
    """The API server refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def object_path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=base64.b64decode(info.ca_data).decode() if info.ca_data else None,
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data or info.private_key_data:
        # The ssl module reads client certificates from files only.
        files = []
        for data in (info.certificate_data, info.private_key_data):
            f = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)
            f.write(base64.b64decode(data) if data else b"")
            f.close()
            files.append(f.name)
        cert = cert or files[0]
        key = key or files[1]
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


class KubeClient:
    """One aiohttp session to the API server; ``relogin`` renews credentials after a 401."""

    def __init__(self, info: kopf.ConnectionInfo, *, relogin: Callable[[], kopf.ConnectionInfo | None] | None = None):
        self._relogin = relogin
        self._session: aiohttp.ClientSession | None = None
        self._configure(info)

    def _configure(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        self._headers = {"User-Agent": "kubeinfer-operator"}
        if info.token:
            self._headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            creds = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {creds}"
        self._ssl = _ssl_context(info) if self.server.startswith("https") else None

    def _session_for(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=64, ssl=self._ssl if self._ssl is not None else True)
            # No total or pool-wait limit: with many endpoints reconciling at once, requests
            # queue for a connection; only connecting and reading are bounded.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """Send a request; ``None`` for 404, ``KubeError`` for any other failure."""
        for attempt in (1, 2):
            headers = dict(self._headers)
            data = None
            if body is not None:
                headers["Content-Type"] = content_type
                data = json.dumps(body)
            async with self._session_for().request(method, self.server + path, data=data, headers=headers,
                                                   params=params) as response:
                if response.status == 401 and attempt == 1 and self._relogin is not None:
                    info = self._relogin()
                    if info is not None:
                        await self.close()
                        self._configure(info)
                        continue
                if response.status == 404:
                    return None
                text = await response.text()
                if response.status >= 400:
                    try:
                        message = json.loads(text).get("message") or text
                    except ValueError:
                        message = text
                    raise KubeError(response.status, message)
                return json.loads(text) if text else {}
        raise KubeError(401, "unauthorized")  # pragma: no cover - the loop returns or raises

    async def serves(self, kind: str) -> bool:
        """Whether the API server serves ``kind`` (its CRD is installed): discovery, which
        every authenticated client may read."""
        prefix, plural = KINDS[kind]
        found = await self.request("GET", prefix)
        return any(r.get("name") == plural for r in (found or {}).get("resources") or [])

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await self.request("GET", object_path(kind, namespace, name))

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator's field manager, taking over conflicting fields."""
        meta = obj["metadata"]
        path = object_path(obj["kind"], meta.get("namespace"), meta["name"])
        result = await self.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                                    params={"fieldManager": FIELD_MANAGER, "force": "true"})
        if result is None:  # a namespace that vanished, say
            raise KubeError(404, f"cannot apply {obj['kind']} {meta['name']}: not found")
        return result

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete an object; False when it was not there."""
        return await self.request("DELETE", object_path(kind, namespace, name),
                                  body={"propagationPolicy": "Background"}) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict | None:
        return await self.request("PATCH", object_path(kind, namespace, name, "status"), body={"status": status},
                                  content_type="application/merge-patch+json")
