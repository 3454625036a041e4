"""A thin asynchronous client of the Kubernetes API server, over httpx.

Only what the gateway does: get, list, create, patch, replace and delete objects by path,
and post reviews. Connection details come from the pod's service account or a
kubeconfig (read with the ``kubernetes`` package's loaders). Failures become
``KubeApiError`` carrying the API's status and ``Status`` reason; mapping those to
Elasticsearch's errors is the caller's business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ClusterConnection:
    base_url: str
    token: str | None = None
    verify: Any = True
    cert: tuple[str, str] | None = None
    namespace: str = "default"

    @classmethod
    def discover(cls) -> "ClusterConnection":
        """In-cluster service account when running in a pod, else the current kubeconfig."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(f"{SERVICE_ACCOUNT_DIR}/token"):
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if ":" in host:
                host = f"[{host}]"
            with open(f"{SERVICE_ACCOUNT_DIR}/token") as f:
                token = f.read().strip()
            with open(f"{SERVICE_ACCOUNT_DIR}/namespace") as f:
                namespace = f.read().strip()
            return cls(f"https://{host}:{port}", token, f"{SERVICE_ACCOUNT_DIR}/ca.crt", None, namespace)
        from kubernetes import client, config  # only for reading a kubeconfig

        configuration = client.Configuration()
        config.load_kube_config(client_configuration=configuration)
        _, context = config.list_kube_config_contexts()
        namespace = (context or {}).get("context", {}).get("namespace", "default")
        auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        token = auth.removeprefix("Bearer ").strip() if auth else None
        verify: Any = configuration.ssl_ca_cert or configuration.verify_ssl
        cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        return cls(configuration.host, token, verify, cert, namespace)


class KubeApi:
    """Requests to the API server with the gateway's own credentials."""

    def __init__(self, connection: ClusterConnection, *, timeout: float = 30.0) -> None:
        self.connection = connection
        headers = {"Accept": "application/json"}
        if connection.token:
            headers["Authorization"] = f"Bearer {connection.token}"
        self._client = httpx.AsyncClient(
            base_url=connection.base_url, headers=headers, verify=connection.verify, cert=connection.cert,
            timeout=timeout,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, content_type: str | None = None,
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            response = await self._client.request(method, path, json=json, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise KubeApiError(503, "ServiceUnavailable", f"Kubernetes API unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                status = response.json()
            except ValueError:
                status = {}
            raise KubeApiError(
                response.status_code, status.get("reason", "") or response.reason_phrase,
                status.get("message", "") or response.text[:200],
            )
        return response.json() if response.content else {}

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, json=body)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, json=patch, content_type="application/merge-patch+json")

    async def json_patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("PATCH", path, json=operations, content_type="application/json-patch+json")

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, json=body)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self.request("DELETE", path, json={"propagationPolicy": "Background"})
