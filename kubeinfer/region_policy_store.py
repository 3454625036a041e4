"""Where the inference region policy is kept in a cluster: one ConfigMap.

The ConfigMap ``kubeinfer-region-policy`` in the release's namespace, labelled
``kubeinfer.io/region-policy=true``, holds the policy document (Elasticsearch's GET
answer) as JSON under ``region_policy.json``. The gateway writes it (``PUT`` and
``DELETE /_inference/_region_policy``), the chart may create it (``regionPolicy``
values), and the gateway and the operator each keep up with it through one watch.
A document the chart wrote without dates takes the ConfigMap's creation time.

This module knows the ConfigMap's shape and nothing of HTTP or kopf.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from pydantic import ValidationError

from .errors import ElasticsearchError
from .region_policy import RegionPolicyDocument, parse_region_policy

CONFIGMAP_NAME = "kubeinfer-region-policy"
LABEL = "kubeinfer.io/region-policy"
SELECTOR = f"{LABEL}=true"
DATA_KEY = "region_policy.json"


def configmap_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def document_configmap(document: RegionPolicyDocument, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": {LABEL: "true"}},
        "data": {DATA_KEY: json.dumps(document.body(), sort_keys=True)},
    }


def document_of(configmap: Mapping[str, Any]) -> RegionPolicyDocument | None:
    """The policy a ConfigMap holds; None when it holds none or cannot be read (which the
    caller logs: a policy that cannot be read allows nothing it did not allow before)."""
    meta = configmap.get("metadata") or {}
    if meta.get("name") != CONFIGMAP_NAME:
        return None
    raw = (configmap.get("data") or {}).get(DATA_KEY)
    if not raw:
        return None
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("not an object")
        policy = parse_region_policy(document.get("region_policy"))
        created = document.get("created_at") or _iso(meta.get("creationTimestamp"))
        return RegionPolicyDocument.model_validate(
            {**document, "region_policy": policy, "created_at": created})
    except (ValueError, ValidationError, ElasticsearchError) as exc:
        raise InvalidRegionPolicy(getattr(exc, "reason", None) or str(exc)) from None


def _iso(creation: Any) -> str:
    """Kubernetes' ``2026-07-13T12:00:00Z`` as Elasticsearch writes dates."""
    if isinstance(creation, str) and creation.endswith("Z") and "." not in creation:
        return creation[:-1] + ".000Z"
    return str(creation or "")


class InvalidRegionPolicy(ValueError):
    """A policy ConfigMap whose document is not a valid policy."""
