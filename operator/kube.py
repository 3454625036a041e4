"""The operator's view of the API server: objects by kind, over the project's one client.

kopf watches and patches the InferenceEndpoints; this applies the objects that serve them
(server-side apply with the operator's field manager), reads Secrets and Deployments,
writes the endpoints' status and posts Events about them, with the identity kopf logged in with
(``kopf.ConnectionInfo``, turned into a ``kubeinfer.kube.Connection`` here). HTTP is
``kubeinfer.kube``'s business; this module knows no builders.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any, Callable, Mapping

import kopf

from kubeinfer import kube
from kubeinfer.kube import Connection, KubeError
from kubeinfer.resource import API_VERSION, KIND, PLURAL

__all__ = ["FIELD_MANAGER", "KINDS", "KubeError", "OperatorClient", "connection_of", "object_path"]

FIELD_MANAGER = "kubeinfer-operator"

# kind -> (apiVersion, plural)
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "Deployment": ("apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "InferencePool": ("inference.networking.k8s.io/v1", "inferencepools"),
    KIND: (API_VERSION, PLURAL),
    "Event": ("v1", "events"),
}


def object_path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    api_version, plural = KINDS[kind]
    return kube.path_of(api_version, plural, namespace, name, subresource)


def connection_of(info: kopf.ConnectionInfo) -> Connection:
    """kopf's login, as the project's client takes it."""

    def pem(data: str | bytes | None) -> bytes | None:
        return base64.b64decode(data) if data else None

    return Connection(
        info.server,
        token=info.token, token_scheme=info.scheme or "Bearer",
        username=info.username, password=info.password,
        ca_file=str(info.ca_path) if info.ca_path else None, ca_data=pem(info.ca_data),
        insecure=bool(info.insecure),
        cert_file=str(info.certificate_path) if info.certificate_path else None,
        key_file=str(info.private_key_path) if info.private_key_path else None,
        cert_data=pem(info.certificate_data), key_data=pem(info.private_key_data),
        namespace=info.default_namespace or "default",
    )


class OperatorClient:
    """Objects by kind: ``get`` answers ``None`` for a missing object; other refusals raise
    ``KubeError``. ``relogin`` renews credentials after a 401."""

    def __init__(self, info: kopf.ConnectionInfo, *,
                 relogin: Callable[[], kopf.ConnectionInfo | None] | None = None) -> None:
        def fresh() -> Connection | None:
            renewed = relogin() if relogin is not None else None
            return connection_of(renewed) if renewed is not None else None

        self.api = kube.KubeClient(connection_of(info), user_agent="kubeinfer-operator", relogin=fresh)

    async def close(self) -> None:
        await self.api.close()

    async def reconnect(self, info: kopf.ConnectionInfo) -> None:
        await self.api.reconnect(connection_of(info))

    async def serves(self, kind: str) -> bool:
        """Whether the API server serves ``kind`` (its CRD is installed): discovery, which
        every authenticated client may read."""
        api_version, plural = KINDS[kind]
        found = await self.api.get_or_none(f"/apis/{api_version}")
        return any(r.get("name") == plural for r in (found or {}).get("resources") or [])

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await self.api.get_or_none(object_path(kind, namespace, name))

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator's field manager, taking over conflicting fields."""
        meta = obj["metadata"]
        return await self.api.apply(object_path(obj["kind"], meta.get("namespace"), meta["name"]), obj,
                                    field_manager=FIELD_MANAGER)

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete an object; False when it was not there."""
        try:
            await self.api.delete(object_path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def post_event(self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``obj`` (as ``kubectl describe`` shows them)."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.api.create(object_path("Event", namespace), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name"),
                               "namespace": namespace, "uid": meta.get("uid")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })

    async def write_status(self, kind: str, namespace: str, name: str, uid: str,
                           status: Mapping[str, Any]) -> dict | None:
        """Set the whole ``status`` of the object ``name`` if it is still the incarnation
        ``uid`` (a JSON patch's ``test``); ``None`` when it is gone or another."""
        ops = [{"op": "test", "path": "/metadata/uid", "value": uid},
               {"op": "add", "path": "/status", "value": dict(status)}]
        try:
            return await self.api.json_patch(object_path(kind, namespace, name, "status"), ops)
        except KubeError as exc:
            if exc.status in (404, 422):
                return None
            raise
