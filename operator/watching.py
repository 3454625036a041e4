"""The operator's own watches, beside kopf's, each scoped on the server.

- InferenceEndpoints: the reconciler's picture of them, rebuilt from every fresh list
  (after a 410, say), so that an endpoint deleted while the watch was away is forgotten.
- Secrets, metadata only and by name: an endpoint that waits for a Secret, or was built
  with an older version of it, is reconciled again. Their data is never asked for here;
  the reconciler reads the Secrets an endpoint references, keeping only key names and
  versions.

Owned Deployments, Services and ConfigMaps are kopf's (``handlers``), with a server-side
label selector. In a namespaced install each watch is per watched namespace. What the
events mean is the reconciler's business; this module only wires watches to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubeinfer.kube import Informer, path_of
from kubeinfer.resource import API_VERSION, PLURAL

from .reconciler import Key, Reconciler

ENDPOINTS = (API_VERSION, PLURAL)
SECRETS = ("v1", "secrets")


def informers(reconciler: Reconciler, namespaces: list[str]) -> list[Informer]:
    client = reconciler.client.api
    found: list[Informer] = []
    for namespace in namespaces or [None]:
        async def endpoint_event(event_type: str, obj: dict[str, Any]) -> None:
            reconciler.seen(event_type, obj)

        async def endpoints_listed(items: list[dict[str, Any]], namespace: str | None = namespace) -> None:
            reconciler.relisted(items, namespace)

        async def secret_event(event_type: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            version = None if event_type == "DELETED" else meta.get("resourceVersion")
            await reconciler.secret_changed(meta.get("namespace") or "default", meta.get("name", ""), version)

        async def secrets_listed(items: list[dict[str, Any]], namespace: str | None = namespace) -> None:
            listed: set[Key] = set()
            for obj in items:
                meta = obj.get("metadata") or {}
                listed.add((meta.get("namespace") or "default", meta.get("name", "")))
                await secret_event("ADDED", {"metadata": meta})
            for secret in list(reconciler.secret_users):
                if secret not in listed and (namespace is None or secret[0] == namespace):
                    await reconciler.secret_changed(*secret, None)

        found.append(Informer(client, path_of(*ENDPOINTS, namespace), endpoint_event, endpoints_listed))
        found.append(Informer(client, path_of(*SECRETS, namespace), secret_event, secrets_listed,
                              metadata_only=True, keep=secret_identity))
    return found


def secret_identity(obj: dict[str, Any]) -> dict[str, Any]:
    """What a listed Secret's metadata is needed for: which one it is, and its version."""
    meta = obj.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("namespace", "name", "resourceVersion") if k in meta}}


async def watch(watches: list[Informer]) -> None:
    """Run the watches until cancelled."""
    await asyncio.gather(*(informer.run() for informer in watches))
