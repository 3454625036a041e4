"""Model servers shared by several InferenceEndpoints, as pure functions.

Two ways to share: a named pool of the namespace (``spec.deployment.pool``), whose
members' models all run in one Deployment; and Elasticsearch's ``deployment_id``, an
endpoint that runs on another endpoint's model server and has none of its own. Both are
one mechanism here: a *serving group* is the endpoints one model server serves. A pool's
group is its members (and the endpoints on their deployments); an endpoint with others on
its deployment is a group of its own name. An endpoint alone is no group: ``builders``
serves it as before.

A group gets one ConfigMap listing its endpoints (the pod follows the mounted file: an
endpoint added or removed loads or unloads its model without a restart, and the pod
template does not change with the list), one Deployment running ``kubeinfer serve
--pool``, one Service. Each member owns the objects (no controller): the garbage
collector deletes them with the last member. The pool's memory budget is the largest
``resources.limits.memory`` of its members, else the operator's ``pool_memory``; each
model takes its ``resources.requests.memory`` (2Gi when unset), in the order the
endpoints were created. A model that does not fit is left out, its endpoint ``PoolFull``.

Talks to no API server; knows nothing of kopf.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import yaml

from kubeinfer.catalog import SERVICES, InferenceEndpointConfig
from kubeinfer.catalog.elasticsearch import BUILTIN_MODELS
from kubeinfer.config import OperatorSettings
from kubeinfer.quantity import parse_quantity
from kubeinfer.region_policy import RegionPolicy
from kubeinfer.resource import (
    API_VERSION, APP_NAME, AUTOSCALER_ANNOTATION, DEPLOYMENT_NOT_FOUND, HELD_METRIC, MIN_REPLICAS_ANNOTATION, INVALID_SPEC, KIND, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_ENDPOINT, LABEL_MANAGED_BY, LABEL_NAME, POOL_FULL, owner_reference, workload_name,
)

from . import builders
from .placement import place_in_regions
from .builders import (
    CONFIG_DIR, CONFIG_HASH_ANNOTATION, COMPONENT_MODEL_SERVER, MANAGER, MODEL_CACHE_DIR, SERVER_MEMORY_REQUEST,
    SERVER_PORT, SERVICE_PORT, UID_PLACEHOLDER, check_policy, parse_spec,
)

POOL_PREFIX = "kubeinfer-pool-"
POOL_CONFIG_KEY = "endpoints.yaml"
# On a group's objects: the pool's name, or the endpoint whose deployment the group is.
LABEL_POOL = "kubeinfer.io/pool"


def pool_name(cr: Mapping[str, Any]) -> str | None:
    return ((cr.get("spec") or {}).get("deployment") or {}).get("pool") or None


def deployment_id(cr: Mapping[str, Any]) -> str | None:
    """The endpoint whose model server ``cr`` runs on (Elasticsearch's ``deployment_id``);
    an external service's ``deployment_id`` (Azure OpenAI's) is the provider's own."""
    spec = cr.get("spec") or {}
    service = SERVICES.get(str(spec.get("service")))
    if service is None or service.external:
        return None
    settings = spec.get("serviceSettings") or {}
    target = settings.get("deployment_id") or None
    if target in BUILTIN_MODELS and settings.get("model_id") in (None, target):
        return None  # a built-in model's own deployment: the endpoint runs the model itself
    return target


def inference_id(cr: Mapping[str, Any]) -> str:
    return str((cr.get("spec") or {}).get("inferenceId") or (cr.get("metadata") or {}).get("name") or "")


def _name(cr: Mapping[str, Any]) -> str:
    return (cr.get("metadata") or {}).get("name") or inference_id(cr)


def _namespace(cr: Mapping[str, Any]) -> str:
    return (cr.get("metadata") or {}).get("namespace") or "default"


def _created(cr: Mapping[str, Any]) -> tuple[str, str]:
    # Older first; RFC 3339 timestamps sort as text. The name breaks ties (and orders a render).
    return (cr.get("metadata") or {}).get("creationTimestamp") or "", _name(cr)


@dataclass(frozen=True)
class Refusal:
    """Why a member is not served: a CamelCase reason and a message."""

    reason: str
    message: str


@dataclass
class ServingGroup:
    """The endpoints of one namespace that one model server serves."""

    name: str  # of its ConfigMap, Deployment and Service
    namespace: str
    pool: str | None
    members: list[dict[str, Any]] = field(default_factory=list)


def group_key(cr: Mapping[str, Any], by_id: Mapping[tuple[str, str], Mapping[str, Any]],
              seen: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """(kind, name) of the group ``cr`` belongs to: ``("pool", pool)`` or ``("own", cr name)``
    of the endpoint that owns the model; None when its ``deployment_id`` names no endpoint."""
    pool = pool_name(cr)
    if pool:
        return "pool", pool
    target = deployment_id(cr)
    if target is None or target == inference_id(cr):
        return "own", _name(cr)
    owner = by_id.get((_namespace(cr), target))
    if owner is None or target in seen:
        return None
    return group_key(owner, by_id, seen | {inference_id(cr)})


def serving_groups(crs: Sequence[Mapping[str, Any]]) -> tuple[list[ServingGroup], list[dict[str, Any]],
                                                               dict[str, Refusal]]:
    """Split ``crs`` into the groups that share a model server, the endpoints served alone,
    and the refused ones (by name: a ``deployment_id`` that names no endpoint)."""
    by_id = {(_namespace(cr), inference_id(cr)): cr for cr in crs}
    groups: dict[tuple[str, str, str], ServingGroup] = {}
    refused: dict[str, Refusal] = {}
    for cr in sorted(crs, key=_created):
        key = group_key(cr, by_id)
        if key is None:
            refused[_name(cr)] = Refusal(DEPLOYMENT_NOT_FOUND, f"Cannot find deployment [{deployment_id(cr)}]")
            continue
        kind, name = key
        ns = _namespace(cr)
        group = groups.setdefault((ns, kind, name), ServingGroup(
            name=POOL_PREFIX + name if kind == "pool" else workload_name(name), namespace=ns,
            pool=name if kind == "pool" else None))
        group.members.append(dict(cr))
    alone = [g.members[0] for g in groups.values() if g.pool is None and len(g.members) == 1]
    shared = [g for g in groups.values() if g.pool is not None or len(g.members) > 1]
    return shared, alone, refused


def _memory(cr: Mapping[str, Any], part: str) -> Fraction | None:
    value = (((cr.get("spec") or {}).get("deployment") or {}).get("resources") or {}).get(part, {}).get("memory")
    return parse_quantity(value) if value is not None else None


@dataclass(frozen=True)
class PoolPlan:
    """Which members a group serves, and why the others are refused (by CR name)."""

    served: list[dict[str, Any]]
    refused: dict[str, Refusal]
    budget: Fraction
    used: Fraction


def plan(group: ServingGroup, settings: OperatorSettings) -> PoolPlan:
    """Admit the members in the order they were created while their models fit the budget;
    an endpoint on another's deployment takes no memory and is served with it."""
    limits = [m for m in (_memory(cr, "limits") for cr in group.members) if m is not None]
    budget = max(limits) if limits else parse_quantity(settings.pool_memory)
    used = Fraction(0)
    served: list[dict[str, Any]] = []
    refused: dict[str, Refusal] = {}
    hosts: dict[str, InferenceEndpointConfig] = {}
    configs = {}
    for cr in group.members:
        try:
            configs[_name(cr)] = parse_spec(cr)
        except Exception as exc:  # noqa: BLE001 - the builders' own errors, reported per member
            refused[_name(cr)] = Refusal(INVALID_SPEC, getattr(exc, "reason", str(exc)))
    for cr in group.members:
        name = _name(cr)
        config = configs.get(name)
        if config is None:
            continue
        if config.spec.external:
            refused[name] = Refusal(INVALID_SPEC, f"[spec.deployment.pool] pools hold local models; the "
                                                  f"[{config.service}] service runs elsewhere")
            continue
        target = deployment_id(cr)
        if target is not None and target != config.inference_id:
            continue
        need = _memory(cr, "requests") or parse_quantity(SERVER_MEMORY_REQUEST)
        if used + need > budget:
            refused[name] = Refusal(POOL_FULL, f"the model needs {_format(need)} and the pool [{group.name}] has "
                                               f"{_format(budget - used)} of its {_format(budget)} left")
            continue
        used += need
        served.append(cr)
        hosts[config.inference_id] = config
    for cr in group.members:
        name, target = _name(cr), deployment_id(cr)
        config = configs.get(name)
        if config is None or target is None or target == config.inference_id or name in refused:
            continue
        host = hosts.get(target)
        if host is None:
            owner = next((m for m in group.members if inference_id(m) == target), None)
            why = refused.get(_name(owner)) if owner is not None else None
            refused[name] = Refusal(why.reason if why else DEPLOYMENT_NOT_FOUND,
                                    f"deployment [{target}] is not served: {why.message if why else 'not found'}")
        elif host.task_type is not config.task_type:
            refused[name] = Refusal(INVALID_SPEC, f"Deployment [{target}] serves task type [{host.task_type}], "
                                                  f"not [{config.task_type}]")
        else:
            served.append(cr)
    return PoolPlan(served=served, refused=refused, budget=budget, used=used)


def _format(amount: Fraction) -> str:
    gib = amount / (1 << 30)
    return f"{float(gib):.3g}Gi"


@dataclass(frozen=True)
class GroupState:
    """Everything the operator applies for one serving group, and what each member's status says."""

    group: ServingGroup
    plan: PoolPlan
    configmap: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    network_policy: dict[str, Any] | None
    hpa: dict[str, Any] | None = None
    scaled_object: dict[str, Any] | None = None

    def objects(self) -> list[dict[str, Any]]:
        return [o for o in (self.configmap, self.service, self.network_policy, self.deployment, self.hpa,
                            self.scaled_object) if o is not None]

    def url(self, cr: Mapping[str, Any], cluster_domain: str) -> str:
        config = parse_spec(cr)
        return (f"http://{self.group.name}.{self.group.namespace}.svc.{cluster_domain}"
                f"/_inference/{config.task_type.value}/{config.inference_id}")


def _owner(cr: Mapping[str, Any], uid: str | None) -> dict[str, Any]:
    # Every member owns the objects; none controls them, so the last one gone takes them along.
    return {"apiVersion": API_VERSION, "kind": KIND, "name": _name(cr),
            "uid": uid or (cr.get("metadata") or {}).get("uid") or UID_PLACEHOLDER,
            "controller": False, "blockOwnerDeletion": True}


def endpoint_metadata(cr: Mapping[str, Any], *, uid: str | None = None) -> dict[str, Any]:
    """Metadata for an object of one member alone (its HTTPRoute): named and owned as the
    objects of an endpoint served alone are."""
    meta = cr.get("metadata") or {}
    name = workload_name(_name(cr))
    return {"name": name, "namespace": _namespace(cr),
            "labels": {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGER, LABEL_ENDPOINT: name},
            "ownerReferences": [owner_reference(_name(cr), uid or meta.get("uid") or UID_PLACEHOLDER)]}


def pool_scaling(configs: Sequence[InferenceEndpointConfig]) -> tuple[int, int] | None:
    """The fewest and most replicas of a pool whose members have adaptive allocations: each
    member needs its own minimum (a fixed num_allocations is one), so the pool goes to zero
    only when every member may; None when no member scales."""
    ranges = []
    for config in configs:
        scaling = builders._scaling(config)
        fixed = int(getattr(config.service_settings, "num_allocations", None) or 1)
        ranges.append(scaling or (fixed, fixed))
    if not ranges or all(builders._scaling(c) is None for c in configs):
        return None
    minimum = max(low for low, _ in ranges)
    return minimum, max(minimum, max(high for _, high in ranges))


def pool_request_query(namespace: str, inference_ids: Sequence[str]) -> str:
    """PromQL: the pool's in-flight requests plus those the gateway holds for its members."""
    ids = "|".join(sorted(inference_ids))
    serving = f'sum({builders.REQUEST_METRIC}{{namespace="{namespace}",inference_id=~"{ids}"}})'
    held = f'sum({HELD_METRIC}{{endpoint_namespace="{namespace}",inference_id=~"{ids}"}})'
    return f"({serving} or vector(0)) + ({held} or vector(0))"


def desired_group(group: ServingGroup, settings: OperatorSettings, *, uid: str | None = None,
                  region_policy: RegionPolicy | None = None, autoscaler: str | None = None) -> GroupState:
    """The ConfigMap, Deployment and Service of ``group`` (and its autoscaler, when members
    have adaptive allocations: the pool scales as one). Raises like ``builders`` when the
    group's first served member cannot be built (its spec or the deployment policy)."""
    decided = plan(group, settings)
    for cr in group.members:
        if _name(cr) not in decided.refused:
            check_policy(cr, settings)
    name, namespace = group.name, group.namespace
    selector = {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}
    labels = {**selector, LABEL_COMPONENT: COMPONENT_MODEL_SERVER, LABEL_MANAGED_BY: MANAGER,
              LABEL_POOL: group.pool or name}
    # One reference per uid: members rendered without theirs share the placeholder (or the
    # one --uid), and the API server refuses an ownerReference listed twice.
    owners = list({o["uid"]: o for o in reversed([_owner(cr, uid) for cr in group.members])}.values())[::-1]

    def metadata() -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": dict(labels),
                "ownerReferences": [dict(o) for o in owners]}

    manifests = [parse_spec(cr).to_manifest(name=_name(cr), namespace=namespace) for cr in decided.served]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(),
                 "data": {POOL_CONFIG_KEY: yaml.safe_dump_all(manifests, sort_keys=True) if manifests else ""}}
    deployment = _pool_deployment(group, decided, settings, metadata(), selector, labels, region_policy)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata(), "spec": {
        "type": "ClusterIP", "selector": dict(selector),
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}}
    network_policy = (builders._network_policy(settings, metadata(), selector, operator_reads_models=True)
                      if settings.endpoint_network_policy else None)
    hpa = scaled_object = None
    configs = [parse_spec(cr) for cr in decided.served]
    scaling = pool_scaling(configs)
    if scaling is not None:
        minimum, maximum = scaling
        kind = autoscaler or ("hpa" if settings.autoscaler == "hpa" else "keda")
        if kind == "keda":
            scaled_object = builders._scaled_object(name, namespace, configs[0], settings, metadata(), minimum,
                                                    maximum)
            scaled_object["spec"]["triggers"][0]["metadata"]["query"] = pool_request_query(
                namespace, [c.inference_id for c in configs])
        else:
            hpa = builders._hpa(name, settings, metadata(), max(1, minimum), maximum)
        deployment["spec"].pop("replicas", None)  # the autoscaler owns the replica count
        deployment["metadata"]["annotations"] = {AUTOSCALER_ANNOTATION: kind, MIN_REPLICAS_ANNOTATION: str(minimum)}
    return GroupState(group=group, plan=decided, configmap=configmap, deployment=deployment, service=service,
                      network_policy=network_policy, hpa=hpa, scaled_object=scaled_object)


def _pool_deployment(group: ServingGroup, decided: PoolPlan, settings: OperatorSettings, metadata: dict[str, Any],
                     selector: dict[str, str], labels: dict[str, str],
                     region_policy: RegionPolicy | None) -> dict[str, Any]:
    """A model server that follows its ConfigMap. It downloads each model when it loads it
    (the list changes under a running pod: no init container can know it) and runs torch,
    as a model added later has no ONNX export made for it."""
    leader = decided.served[0] if decided.served else group.members[0]
    configs = [parse_spec(cr) for cr in decided.served]
    threads = max([int(getattr(c.service_settings, "num_threads", None) or 1) for c in configs] or [1])
    replicas = max([int(getattr(c.service_settings, "num_allocations", None) or 1) for c in configs] or [1])
    deployment = builders._deployment(
        parse_spec(leader), settings, dict(settings.model_aliases), group.name, metadata, selector, labels, "",
        {}, True)
    spec = deployment["spec"]
    spec["replicas"] = replicas
    pod = spec["template"]["spec"]
    pod.pop("initContainers", None)
    container = pod["containers"][0]
    container["image"] = settings.server_image
    container["args"] = ["serve", "--pool", "--config", f"{CONFIG_DIR}/{POOL_CONFIG_KEY}", "--port",
                         str(SERVER_PORT), "--cache-dir", MODEL_CACHE_DIR]
    for volume in pod["volumes"]:
        if volume["name"] == "config":
            # The whole ConfigMap, no items: a mount of a key by subPath or items would not update in place.
            volume["configMap"] = {"name": group.name}
    offline = {"HF_HUB_OFFLINE"}
    container["env"] = [e for e in container["env"] if e["name"] not in offline]
    for env in container["env"]:
        if env["name"] == "OMP_NUM_THREADS":
            env["value"] = str(threads)
    resources = container["resources"]
    resources.setdefault("requests", {})["cpu"] = str(threads)
    # The pod reserves the whole budget: what the members use changes with them, and a pod
    # template that changed with them would restart every model at each change.
    resources["requests"]["memory"] = _quantity(decided.budget)
    resources.setdefault("limits", {})["memory"] = _quantity(decided.budget)
    overrides = {k: v for k, v in ((leader.get("spec") or {}).get("deployment") or {}).items()
                 if k in ("nodeSelector", "tolerations", "affinity", "annotations", "image")}
    builders._apply_overrides(deployment, overrides)
    if region_policy is not None and settings.region_node_placement:
        place_in_regions(pod, region_policy)
    # The pod template changes with what the pod needs, never with the list of endpoints.
    template = json.dumps(spec["template"], sort_keys=True)
    spec["template"]["metadata"]["annotations"] = {
        **spec["template"]["metadata"].get("annotations", {}),
        CONFIG_HASH_ANNOTATION: hashlib.sha256(template.encode()).hexdigest()[:16]}
    return deployment


def _quantity(amount: Fraction) -> str:
    mib = amount / (1 << 20)
    return f"{int(mib)}Mi" if mib.denominator == 1 else str(int(amount))
