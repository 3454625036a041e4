"""The Kubernetes objects that serve an InferenceEndpoint, as pure functions.

An InferenceEndpoint manifest and the operator's settings go in; plain dicts ready for
server-side apply come out: a ConfigMap holding the endpoint's configuration, a
Deployment running ``kubeinfer serve`` (a model server for local models, a small proxy
for external providers), a ClusterIP Service and, with adaptive allocations, an
autoscaler on the in-flight request metric: a KEDA ScaledObject (which can go to zero
replicas and back) or a HorizontalPodAutoscaler (at least one replica; the operator's idle
scaler takes an endpoint with min 0 to zero). Validation is the catalog's: an invalid spec raises
``ElasticsearchError`` before any object is built, and a ``spec.deployment`` the settings'
deployment policy refuses raises ``PolicyViolation``.

This module talks to no API server, reads no environment and imports no kopf.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, get_args

import yaml

from kubeinfer import deployment_policy
from kubeinfer.catalog import InferenceEndpointConfig, TaskType, from_manifest
from kubeinfer.config import OperatorSettings, ServerSettings, env_var
from kubeinfer.errors import validation_exception
from kubeinfer.region_policy import RegionPolicy
from kubeinfer.model_ids import MODEL_ALIASES_ENV, explicit_aliases, is_local_path, resolve_model
from kubeinfer.resource import (
    ANNOTATION_PREFIX, API_VERSION, APP_NAME, AUTOSCALER_ANNOTATION, HELD_METRIC, KIND, LABEL_COMPONENT,
    LABEL_ENDPOINT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, MIN_REPLICAS_ANNOTATION,
    owner_reference, workload_name,
)
from kubeinfer.secrets import secret_env_var
from .placement import place_in_regions

MANAGER = "kubeinfer-operator"
COMPONENT_MODEL_SERVER = "model-server"
COMPONENT_PROXY = "provider-proxy"
CONFIG_HASH_ANNOTATION = f"{ANNOTATION_PREFIX}/config-hash"
SECRET_VERSIONS_ANNOTATION = f"{ANNOTATION_PREFIX}/secret-versions"
UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
KEDA_API_VERSION = "keda.sh/v1alpha1"
# Requests admitted by a model server and not yet answered (queued ones included): with
# HELD_METRIC (requests the gateway holds for an endpoint at zero), the autoscalers' signal.
REQUEST_METRIC = "kubeinfer_requests_in_flight"
Autoscaler = Literal["keda", "hpa"]

CONFIG_DIR = "/etc/kubeinfer"
CONFIG_KEY = "endpoint.yaml"
MODEL_CACHE_DIR = "/models"
HF_HOME = f"{MODEL_CACHE_DIR}/huggingface"
SERVER_PORT = 8080
SERVICE_PORT = 80
RUN_AS_USER = 10001  # the images' kubeinfer user
# Most replicas an autoscaler built from adaptive_allocations may add when none is given.
DEFAULT_MAX_ALLOCATIONS = 10
# spec.deployment fields the model server reads as settings: field -> the values it takes.
ENGINE_FIELDS = {field: get_args(ServerSettings.model_fields[field].annotation) for field in ("runtime", "quantization")}
ENGINE_ENV = {field: env_var(field) for field in ENGINE_FIELDS}
# Server settings that guard the cluster rather than tune an endpoint: only the operator
# sets them on a pod, so whoever may write a CR cannot lift them for their own endpoint.
ALLOW_LINK_LOCAL_ENV = env_var("allow_link_local_urls")
OPERATOR_ONLY_ENV = frozenset({ALLOW_LINK_LOCAL_ENV})

PROXY_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
SERVER_MEMORY_REQUEST = "2Gi"
INIT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}

# Downloads a Hugging Face model into the cache volume before the server starts.
DOWNLOAD_SCRIPT = (
    "import sys\n"
    "from huggingface_hub import snapshot_download\n"
    "print('downloading', sys.argv[1], 'to', snapshot_download(sys.argv[1]), flush=True)\n"
)


def endpoint_url(cr_name: str, namespace: str, config: InferenceEndpointConfig, cluster_domain: str) -> str:
    """The in-cluster URL of the endpoint's ``_inference`` path, through its Service."""
    svc = workload_name(cr_name)
    return f"http://{svc}.{namespace}.svc.{cluster_domain}/_inference/{config.task_type.value}/{config.inference_id}"


def referenced_secrets(config: InferenceEndpointConfig) -> dict[str, list[str]]:
    """Secret name -> the keys the endpoint reads from it."""
    out: dict[str, list[str]] = {}
    for ref in config.secret_refs().values():
        out.setdefault(ref.secret_key_ref.name, []).append(ref.secret_key_ref.key)
    return out


@dataclass(frozen=True)
class DesiredState:
    """Everything the operator applies for one InferenceEndpoint."""

    config: InferenceEndpointConfig
    configmap: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    hpa: dict[str, Any] | None
    scaled_object: dict[str, Any] | None = None
    network_policy: dict[str, Any] | None = None

    def objects(self) -> list[dict[str, Any]]:
        return [o for o in (self.configmap, self.service, self.network_policy, self.deployment, self.hpa,
                            self.scaled_object) if o is not None]


def parse_spec(cr: Mapping[str, Any]) -> InferenceEndpointConfig:
    """The endpoint's configuration; raises ``ElasticsearchError`` with the catalog's reason."""
    manifest = {**cr, "apiVersion": cr.get("apiVersion") or API_VERSION, "kind": cr.get("kind") or KIND}
    config = from_manifest(manifest)
    if config.plain_secrets():
        # A CR never holds a secret in plain text: the value is not repeated in the error.
        fields = ", ".join(sorted(config.plain_secrets()))
        raise validation_exception(f"[serviceSettings] secrets [{fields}] must be given as secretKeyRef")
    overrides = (cr.get("spec") or {}).get("deployment")
    if overrides is not None:
        _check_overrides(overrides)
    return config


def _check_overrides(overrides: Any) -> None:
    if not isinstance(overrides, Mapping):
        raise validation_exception("[spec.deployment] must be an object")
    known = {"replicas", "image", "resources", "nodeSelector", "tolerations", "affinity", "env", "annotations",
             "runtime", "quantization", "pool"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise validation_exception(f"[spec.deployment] unknown fields {unknown}")
    replicas = overrides.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0):
        raise validation_exception("[spec.deployment.replicas] must be an integer >= 0")
    for field, kind in (("image", str), ("resources", Mapping), ("nodeSelector", Mapping),
                        ("tolerations", list), ("affinity", Mapping), ("env", list), ("annotations", Mapping)):
        if overrides.get(field) is not None and not isinstance(overrides[field], kind):
            raise validation_exception(f"[spec.deployment.{field}] has the wrong type")
    for env in overrides.get("env") or []:
        if not isinstance(env, Mapping) or not env.get("name"):
            raise validation_exception("[spec.deployment.env] entries need a name")
        if env["name"] in OPERATOR_ONLY_ENV:
            raise validation_exception(
                f"[spec.deployment.env] may not set [{env['name']}]: it is the operator's setting, "
                f"for every endpoint")
    for field, allowed in ENGINE_FIELDS.items():
        if overrides.get(field) is not None and overrides[field] not in allowed:
            raise validation_exception(f"[spec.deployment.{field}] must be one of {list(allowed)}")
    if overrides.get("quantization") == "int8" and overrides.get("runtime") == "torch":
        raise validation_exception("[spec.deployment.quantization] int8 runs on ONNX Runtime: "
                                   "[spec.deployment.runtime] must be auto or onnx, not torch")


def check_policy(cr: Mapping[str, Any], settings: OperatorSettings) -> None:
    """Raise ``PolicyViolation`` when the CR's ``spec.deployment`` asks for what the
    settings' deployment policy does not allow (the operator's own images always are)."""
    deployment_policy.check(cr.get("spec") or {}, settings.deployment_policy, settings.endpoint_images)


def desired_state(
    cr: Mapping[str, Any],
    settings: OperatorSettings,
    *,
    secret_versions: Mapping[str, str] | None = None,
    uid: str | None = None,
    autoscaler: Autoscaler | None = None,
    region_policy: RegionPolicy | None = None,
) -> DesiredState:
    """Build every object for the InferenceEndpoint ``cr``.

    ``secret_versions`` maps each referenced Secret to its resourceVersion: they go into
    the pod template's hash, so that a changed Secret rolls the pods. ``autoscaler`` is
    the kind of autoscaler adaptive allocations get; by default the settings' choice, KEDA
    for ``auto`` (the operator passes what it found in the cluster). With
    ``region_policy`` and the settings' ``region_node_placement``, a model server's pods
    run only on nodes in the regions the policy allows.
    """
    config = parse_spec(cr)
    check_policy(cr, settings)  # never a pod the policy does not allow, whoever calls
    meta = cr.get("metadata") or {}
    cr_name = meta.get("name") or config.inference_id
    namespace = meta.get("namespace") or "default"
    owner = owner_reference(cr_name, uid or meta.get("uid") or UID_PLACEHOLDER)
    name = workload_name(cr_name)
    local = not config.spec.external
    component = COMPONENT_MODEL_SERVER if local else COMPONENT_PROXY
    selector = {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}
    labels = {**selector, LABEL_COMPONENT: component, LABEL_MANAGED_BY: MANAGER, LABEL_ENDPOINT: name}

    def metadata(kind_name: str = name) -> dict[str, Any]:
        return {"name": kind_name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [dict(owner)]}

    endpoint_yaml = yaml.safe_dump(config.to_manifest(name=cr_name, namespace=namespace), sort_keys=True)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(), "data": {CONFIG_KEY: endpoint_yaml}}

    versions = dict(sorted((secret_versions or {}).items()))
    config_hash = hashlib.sha256(
        json.dumps({"config": endpoint_yaml, "secrets": versions}, sort_keys=True).encode()
    ).hexdigest()[:16]
    overrides = dict((cr.get("spec") or {}).get("deployment") or {})

    aliases = _model_aliases(settings, overrides)
    deployment = _deployment(config, settings, aliases, name, metadata(), selector, labels, config_hash, versions,
                             local)
    kind: Autoscaler = autoscaler or ("hpa" if settings.autoscaler == "hpa" else "keda")
    scaling = _scaling(config) if local and overrides.get("replicas") is None else None
    hpa = scaled_object = None
    if scaling is not None:
        minimum, maximum = scaling
        if kind == "keda":
            scaled_object = _scaled_object(name, namespace, config, settings, metadata(), minimum, maximum)
        else:
            hpa = _hpa(name, settings, metadata(), max(1, minimum), maximum)
        deployment["spec"].pop("replicas", None)  # the autoscaler owns the replica count
        annotations = {AUTOSCALER_ANNOTATION: kind, MIN_REPLICAS_ANNOTATION: str(minimum)}
        deployment["metadata"]["annotations"] = annotations
    _apply_overrides(deployment, overrides)
    if local and region_policy is not None and settings.region_node_placement:
        place_in_regions(deployment["spec"]["template"]["spec"], region_policy)
    if local:  # the one map the init container downloaded by, whatever spec.deployment.env said
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] == MODEL_ALIASES_ENV:
                env.pop("valueFrom", None)
                env["value"] = json.dumps(aliases, sort_keys=True)

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    network_policy = _network_policy(settings, metadata(), selector) if settings.endpoint_network_policy else None
    return DesiredState(config=config, configmap=configmap, deployment=deployment, service=service, hpa=hpa,
                        scaled_object=scaled_object, network_policy=network_policy)


def _network_policy(settings: OperatorSettings, metadata: dict[str, Any], selector: dict[str, str],
                    *, operator_reads_models: bool = False) -> dict[str, Any]:
    """Ingress to the endpoint's pods from the gateway and the allowed namespaces only: an
    endpoint pod has no authentication of its own, so nothing else may skip the gateway's
    checks. (The kubelet's probes are not subject to NetworkPolicies.) A shared model
    server's pods (``operator_reads_models``) also admit the operator's pods, which ask
    them at ``/readyz?model=`` whether each member's model is loaded."""
    gateway: dict[str, Any] = {"podSelector": {"matchLabels": dict(settings.gateway_pod_labels)}}
    gateway["namespaceSelector"] = (
        {"matchLabels": {"kubernetes.io/metadata.name": settings.gateway_namespace}}
        if settings.gateway_namespace else {}
    )
    peers = [gateway]
    if settings.endpoint_allowed_namespaces:
        peers.append({"namespaceSelector": {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In",
            "values": sorted(settings.endpoint_allowed_namespaces)}]}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": dict(selector)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": "http", "protocol": "TCP"}]},
                        *([_operator_ingress(settings)] if operator_reads_models else [])],
        },
    }


def _operator_ingress(settings: OperatorSettings) -> dict[str, Any]:
    """The operator's pods, in their namespace, to the pods' port: nothing else."""
    operator: dict[str, Any] = {"podSelector": {"matchLabels": dict(settings.operator_pod_labels)}}
    operator["namespaceSelector"] = (
        {"matchLabels": {"kubernetes.io/metadata.name": settings.operator_namespace}}
        if settings.operator_namespace else {}
    )
    return {"from": [operator], "ports": [{"port": "http", "protocol": "TCP"}]}


def _model_aliases(settings: OperatorSettings, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The operator's model aliases, and those the pod's own ``spec.deployment.env`` sets.

    The server reads the map from the pod's environment and the init container downloads
    by it, so that both agree on the model even when a CR replaces a built-in one.
    """
    pod_env = {e.get("name"): e.get("value") for e in overrides.get("env") or []
               if isinstance(e, Mapping) and isinstance(e.get("value"), str)}
    try:
        return {**settings.model_aliases, **explicit_aliases(pod_env)}
    except ValueError as exc:
        raise validation_exception(f"[spec.deployment.env] {exc}") from None


def _deployment(
    config: InferenceEndpointConfig,
    settings: OperatorSettings,
    aliases: Mapping[str, str],
    name: str,
    metadata: dict[str, Any],
    selector: dict[str, str],
    labels: dict[str, str],
    config_hash: str,
    secret_versions: Mapping[str, str],
    local: bool,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": secret_env_var(field), "valueFrom": {"secretKeyRef": {"name": ref.secret_key_ref.name,
                                                                       "key": ref.secret_key_ref.key}}}
        for field, ref in sorted(config.secret_refs().items())
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    args = ["serve", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}", "--port", str(SERVER_PORT)]
    pod_spec: dict[str, Any] = {}
    init_containers: list[dict[str, Any]] = []
    replicas = 1

    if local:
        settings_model = config.service_settings
        threads = int(getattr(settings_model, "num_threads", 1) or 1)
        replicas = int(getattr(settings_model, "num_allocations", None) or 1)
        gpus = settings.gpus_per_endpoint
        # Image-and-text models of the embedding task are served by torch, never exported to ONNX:
        # the image with torch serves them on CPU too.
        torch_only = config.task_type is TaskType.EMBEDDING
        image = settings.server_image if gpus > 0 or torch_only else settings.server_cpu_image
        resources: dict[str, Any] = {"requests": {"cpu": str(threads), "memory": SERVER_MEMORY_REQUEST}}
        if gpus > 0:
            resources["requests"][settings.gpu_resource] = str(gpus)
            resources["limits"] = {settings.gpu_resource: str(gpus)}
            pod_spec["tolerations"] = [{"key": settings.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
        model = resolve_model(getattr(settings_model, "model_id"), aliases)
        env += [
            {"name": "HF_HOME", "value": HF_HOME},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "OMP_NUM_THREADS", "value": str(threads)},
            {"name": MODEL_ALIASES_ENV, "value": json.dumps(aliases, sort_keys=True)},
        ]
        if settings.model_cache_pvc:
            volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": settings.model_cache_pvc}})
        else:
            volumes.append({"name": "models", "emptyDir": {"sizeLimit": settings.model_cache_size}})
        mounts.append({"name": "models", "mountPath": MODEL_CACHE_DIR})
        args += ["--cache-dir", MODEL_CACHE_DIR]
        if not is_local_path(model):
            init_containers.append({
                "name": "download-model",
                "image": image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["python", "-c", DOWNLOAD_SCRIPT, model],
                "env": [{"name": "HF_HOME", "value": HF_HOME}, {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}],
                "resources": copy.deepcopy(INIT_RESOURCES),
                "securityContext": _container_security(),
                "volumeMounts": [{"name": "models", "mountPath": MODEL_CACHE_DIR},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            })
        if gpus == 0 and not torch_only:
            # The CPU server has no torch: it serves the model's checked ONNX export, which
            # the GPU server's image (torch, run on CPU) writes into the cache once.
            init_containers.append({
                "name": "export-model",
                "image": settings.server_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["kubeinfer", "export", model, "--task-type", config.task_type.value,
                            "--cache-dir", MODEL_CACHE_DIR],
                "env": [{"name": "HF_HOME", "value": HF_HOME}, {"name": "HF_HUB_OFFLINE", "value": "1"},
                        {"name": MODEL_ALIASES_ENV, "value": json.dumps(aliases, sort_keys=True)}],
                "resources": copy.deepcopy(INIT_RESOURCES),
                "securityContext": _container_security(),
                "volumeMounts": [{"name": "models", "mountPath": MODEL_CACHE_DIR},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            })
        # Loading a model can take minutes: the startup probe holds off the liveness probe.
        startup = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 120}
    else:
        image = settings.proxy_image
        resources = copy.deepcopy(PROXY_RESOURCES)
        startup = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 30}

    if settings.allow_link_local_urls:
        env.append({"name": ALLOW_LINK_LOCAL_ENV, "value": "true"})
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kubeinfer"],
        "args": args,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": resources,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "startupProbe": startup,
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    pod_spec.update({
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    })
    if init_containers:
        pod_spec["initContainers"] = init_containers
    annotations = {CONFIG_HASH_ANNOTATION: config_hash}
    if secret_versions:
        annotations[SECRET_VERSIONS_ANNOTATION] = json.dumps(dict(secret_versions), sort_keys=True)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            "template": {"metadata": {"labels": dict(labels), "annotations": annotations}, "spec": pod_spec},
        },
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _scaling(config: InferenceEndpointConfig) -> tuple[int, int] | None:
    """The fewest and most replicas of adaptive allocations. As in Elasticsearch, a
    ``min_number_of_allocations`` of 0 or unset lets the endpoint go to zero."""
    adaptive = getattr(config.service_settings, "adaptive_allocations", None)
    if adaptive is None or not adaptive.enabled:
        return None
    minimum = max(0, adaptive.min_number_of_allocations or 0)
    maximum = max(minimum, 1, adaptive.max_number_of_allocations or DEFAULT_MAX_ALLOCATIONS)
    return minimum, maximum


def request_query(namespace: str, inference_id: str) -> str:
    """PromQL: the endpoint's in-flight requests plus those the gateway holds for it."""
    serving = f'sum({REQUEST_METRIC}{{namespace="{namespace}",inference_id="{inference_id}"}})'
    held = f'sum({HELD_METRIC}{{endpoint_namespace="{namespace}",inference_id="{inference_id}"}})'
    return f"({serving} or vector(0)) + ({held} or vector(0))"


def _scaled_object(name: str, namespace: str, config: InferenceEndpointConfig, settings: OperatorSettings,
                   metadata: dict[str, Any], minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": minimum,
            "maxReplicaCount": maximum,
            # The quiet period before the last replica goes (KEDA's cooldown applies to 1 -> 0 only).
            "cooldownPeriod": settings.scale_to_zero_after,
            "pollingInterval": 5,
            "triggers": [{
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": settings.prometheus_address,
                    "query": request_query(namespace, config.inference_id),
                    "threshold": str(settings.target_requests),
                    # Any request, in flight or held by the gateway, wakes an endpoint at zero.
                    "activationThreshold": "0",
                },
            }],
        },
    }


def _hpa(name: str, settings: OperatorSettings, metadata: dict[str, Any], minimum: int,
         maximum: int) -> dict[str, Any]:
    # A Pods metric needs a custom-metrics adapter (prometheus-adapter) serving
    # kubeinfer_requests_in_flight; CPU says little about a model server's load.
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": REQUEST_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(settings.target_requests)}}}],
        },
    }


def _apply_overrides(deployment: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """``spec.deployment`` wins over every choice the operator made."""
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    engine = [{"name": env, "value": overrides[field]} for field, env in ENGINE_ENV.items() if overrides.get(field)]
    if engine:  # before `env`: an explicit variable there still wins
        names = {e["name"] for e in engine}
        container["env"] = [e for e in container["env"] if e["name"] not in names] + engine
    if overrides.get("replicas") is not None:
        spec["replicas"] = overrides["replicas"]
    if overrides.get("image"):
        container["image"] = overrides["image"]
        for init in pod.get("initContainers", []):
            init["image"] = overrides["image"]
    if overrides.get("resources"):
        for part in ("requests", "limits"):
            given = (overrides["resources"] or {}).get(part)
            if given:
                container["resources"].setdefault(part, {}).update({k: str(v) for k, v in given.items()})
    for field in ("nodeSelector", "tolerations", "affinity"):
        if overrides.get(field) is not None:
            pod[field] = copy.deepcopy(overrides[field])
    if overrides.get("env"):
        extra = {e["name"]: dict(e) for e in overrides["env"]}
        container["env"] = [e for e in container["env"] if e["name"] not in extra] + list(extra.values())
    if overrides.get("annotations"):
        template_meta = spec["template"]["metadata"]
        ours = {k: v for k, v in template_meta["annotations"].items() if k.startswith(f"{ANNOTATION_PREFIX}/")}
        template_meta["annotations"] = {**template_meta["annotations"], **overrides["annotations"], **ours}
