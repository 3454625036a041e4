"""Gateway API objects for endpoints, as pure functions: an ``HTTPRoute``
(gateway.networking.k8s.io/v1) per endpoint that sends its inference paths from a
cluster's own Gateway straight to its model server, and an ``InferencePool``
(inference.networking.k8s.io/v1) per model server for an endpoint picker to choose
among its pods.

Only inference goes this way: ``POST /_inference/<task>/<id>`` and its ``_stream``
(and ``/_inference/<id>``). Creating, reading and deleting endpoints stay on kubeinfer's
gateway, which authenticates and authorises them. Talks to no API server.
"""

from __future__ import annotations

from typing import Any, Mapping

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.config import OperatorSettings
from kubeinfer.resource import LABEL_INSTANCE, LABEL_NAME

from .builders import SERVER_PORT, SERVICE_PORT

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_API_VERSION = f"{GATEWAY_API_GROUP}/v1"
INFERENCE_API_GROUP = "inference.networking.k8s.io"
INFERENCEPOOL_API_VERSION = f"{INFERENCE_API_GROUP}/v1"
# The pod label an endpoint picker reads to know which engine serves a pod (and so which
# metrics it exposes), and kubeinfer's value for it.
ENGINE_LABEL = "inference.networking.k8s.io/engine-type"
ENGINE = "kubeinfer"


def parse_parent(value: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a Gateway; ValueError otherwise."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"a Gateway is given as NAMESPACE/NAME, not [{value}]")
    return namespace, name


def inference_paths(config: InferenceEndpointConfig) -> list[str]:
    """The paths by which Elasticsearch's clients call the endpoint."""
    base = f"/_inference/{config.task_type.value}/{config.inference_id}"
    return [base, f"{base}/_stream", f"/_inference/{config.inference_id}"]


def http_route(config: InferenceEndpointConfig, metadata: Mapping[str, Any], parent: str, service: str,
               port: int, inference_pool: str | None = None) -> dict[str, Any]:
    """The HTTPRoute sending the endpoint's inference from the Gateway ``parent`` to its
    Service (or to its InferencePool, when given)."""
    gateway_namespace, gateway_name = parse_parent(parent)
    if inference_pool is None:
        backend: dict[str, Any] = {"name": service, "port": port}
    else:
        backend = {"group": INFERENCE_API_GROUP, "kind": "InferencePool", "name": inference_pool}
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": dict(metadata),
        "spec": {
            "parentRefs": [{"group": GATEWAY_API_GROUP, "kind": "Gateway", "namespace": gateway_namespace,
                            "name": gateway_name}],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": path}, "method": "POST"}
                            for path in inference_paths(config)],
                "backendRefs": [backend],
            }],
        },
    }


def inference_pool(metadata: Mapping[str, Any], selector: Mapping[str, str], target_port: int,
                   picker: str) -> dict[str, Any]:
    """The InferencePool of a model server's pods; ``picker`` is the endpoint picker's
    ``SERVICE:PORT`` in the same namespace."""
    service, _, port = picker.partition(":")
    return {
        "apiVersion": INFERENCEPOOL_API_VERSION,
        "kind": "InferencePool",
        "metadata": dict(metadata),
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "targetPorts": [{"number": target_port}],
            "endpointPickerRef": {"kind": "Service", "name": service, "port": {"number": int(port)},
                                  "failureMode": "FailOpen"},
        },
    }


def gateway_objects(settings: OperatorSettings, members: list[tuple[Any, dict[str, Any]]],
                     server: dict[str, Any], *, model_server: bool) -> list[dict[str, Any]]:
    """The HTTPRoutes of a model server's endpoints (with the Gateway setting) and its
    InferencePool (with the InferencePool setting)."""
    out: list[dict[str, Any]] = []
    meta = server["metadata"]
    pool = None
    if settings.inference_pool and model_server:
        server["spec"]["template"]["metadata"]["labels"][ENGINE_LABEL] = ENGINE
        selector = {LABEL_NAME: meta["labels"][LABEL_NAME], LABEL_INSTANCE: meta["labels"][LABEL_INSTANCE]}
        out.append(inference_pool(meta, selector, SERVER_PORT, settings.endpoint_picker))
        pool = meta["name"]
    if settings.gateway_parent:
        for config, endpoint_meta in members:
            out.append(http_route(config, endpoint_meta, settings.gateway_parent, meta["name"], SERVICE_PORT,
                                  inference_pool=pool))
    return out
