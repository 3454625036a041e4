"""An in-memory Kubernetes API server for tests: kmock's ``KubernetesEmulator`` extended
with what operators, API clients and kubectl rely on.

Added over kmock: ``metadata.uid``/``generation``/``resourceVersion``/``creationTimestamp``,
optimistic concurrency, the ``status`` subresource, PUT, JSON merge, strategic merge and
JSON patches, server-side apply with ``managedFields`` and conflicts, ``generateName``,
label and field selectors, namespaces that must exist, watches resumable from a
resourceVersion within a small history window (410 Gone past it) with bookmarks,
CRDs served from their definitions with their schemas applied (pruning, defaults,
enums, CEL rules), ValidatingAdmissionPolicies with their bindings and parameters,
finalizers with ``deletionTimestamp``, asynchronous garbage collection
through ``ownerReferences`` with the three propagation policies, discovery, OpenAPI
documents and Table answers for kubectl, and answers to SubjectAccessReview and
TokenReview that tests configure. Controllers that act on objects (such as the
Deployment controller stand-in) subscribe through ``on_change``.

README.md beside this module lists what it still does not do.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import datetime
import itertools
import json
import re
import uuid
from typing import Any, Callable, Iterable

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from kubeinfer.structural import cel_undefined_fields

from . import discovery, policies, protobuf, schemas, tables
from .patching import (
    PatchError, PatchTestFailed, apply_merge, changed_paths, clone, conflicts, dotted, field_set, fields_v1,
    json_patch, merge_patch, remove_unowned, strategic_merge_patch,
)
from .schemas import Schema

Key = tuple[str, str | None, str]  # (resource "group/version/plural", namespace, name)
ChangeListener = Callable[[str, str, dict[str, Any]], None]  # (event type, resource key, object)
Owner = tuple[str, str, str]  # (field manager, operation, subresource)

# Built-in resources the emulator serves: kind, namespaced, subresources, short names, categories.
BUILTIN_RESOURCES: dict[str, tuple[str, bool, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "v1/namespaces": ("Namespace", False, ("status",), ("ns",), ()),
    "v1/configmaps": ("ConfigMap", True, (), ("cm",), ()),
    "v1/secrets": ("Secret", True, (), (), ()),
    "v1/services": ("Service", True, ("status",), ("svc",), ("all",)),
    "v1/pods": ("Pod", True, ("status",), ("po",), ("all",)),
    "v1/events": ("Event", True, (), ("ev",), ()),
    "v1/serviceaccounts": ("ServiceAccount", True, (), ("sa",), ()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, ("status",), ("pvc",), ()),
    "apps/v1/deployments": ("Deployment", True, ("status", "scale"), ("deploy",), ("all",)),
    "apps/v1/replicasets": ("ReplicaSet", True, ("status", "scale"), ("rs",), ("all",)),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, ("status",), ("hpa",), ("all",)),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, ("status",), ("pdb",), ()),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, (), ("netpol",), ()),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, (), (), ()),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, (), (), ()),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False, (), (), ()),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False, (), (), ()),
    "events.k8s.io/v1/events": ("Event", True, (), ("ev",), ()),
    "coordination.k8s.io/v1/leases": ("Lease", True, (), (), ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ("status",),
                                                          ("crd", "crds"), ("api-extensions",)),
    "admissionregistration.k8s.io/v1/validatingadmissionpolicies": ("ValidatingAdmissionPolicy", False, ("status",),
                                                                    (), ("api-extensions",)),
    "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings": ("ValidatingAdmissionPolicyBinding", False,
                                                                           (), (), ("api-extensions",)),
    "authorization.k8s.io/v1/subjectaccessreviews": ("SubjectAccessReview", False, (), (), ()),
    "authentication.k8s.io/v1/tokenreviews": ("TokenReview", False, (), (), ()),
}
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
NAMESPACES = "v1/namespaces"
# Resources answered on create and never stored.
REVIEWS = {"authorization.k8s.io/v1/subjectaccessreviews", "authentication.k8s.io/v1/tokenreviews"}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# Namespaces every cluster has.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        out = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "code": self.code, "reason": self.reason, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_key(group: str, version: str, plural: str) -> str:
    return f"{group}/{version}/{plural}" if group else f"{version}/{plural}"


def allow_everything(spec: dict[str, Any]) -> tuple[bool, str]:
    return True, "allowed by the emulator's default policy"


@attrs.define(kw_only=True)
class Served:
    """What the emulator knows of a resource besides kmock's discovery information."""
    kind: str
    namespaced: bool
    subresources: tuple[str, ...]
    list_kind: str = ""
    crd: str | None = None  # the name of the CRD that defines it
    schema: dict[str, Any] | None = None  # a CRD version's openAPIV3Schema
    columns: list[dict[str, Any]] = attrs.field(factory=list)  # additionalPrinterColumns


class WatchEvent(dict):
    """A change as queued to every watch it matches, encoded at most once per form (the
    whole object, its metadata only), as the API server's watch cache does."""

    __slots__ = ("encoded",)

    def __init__(self, event_type: str, obj: dict[str, Any]) -> None:
        super().__init__(type=event_type, object=obj)
        self.encoded: dict[bool, bytes] = {}


@attrs.define(kw_only=True)
class Watcher:
    resource: str
    namespace: str | None
    match: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue = attrs.field(factory=asyncio.Queue)
    agent: str = ""  # the client's User-Agent, for faults aimed at one client
    stalled: bool = False  # a fault: the stream delivers nothing, not even bookmarks


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """A stateful Kubernetes API over HTTP; objects are in ``self.store``."""

    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # Events per resource, kept for resuming watches: (resourceVersion, type, object).
    history: dict[str, collections.deque] = attrs.field(factory=dict, init=False)
    # How many events per resource a watch can resume over; older resourceVersions get 410 Gone.
    history_window: int = 200
    # How often a watch that asked for bookmarks gets one.
    bookmark_interval: float = 1.0
    # How long after a deletion the garbage collector looks for dependents to delete.
    gc_delay: float = 0.02
    # Field ownership for server-side apply: per object, per (manager, operation, subresource).
    managed: dict[Key, dict[Owner, set]] = attrs.field(factory=dict, init=False)
    watchers: list[Watcher] = attrs.field(factory=list, init=False)
    listeners: list[ChangeListener] = attrs.field(factory=list, init=False)
    # SubjectAccessReview policy: spec -> (allowed, reason); TokenReview: token -> user info.
    access_policy: Callable[[dict[str, Any]], tuple[bool, str]] = allow_everything
    tokens: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    # Requests on these (method, resource key) pairs fail with the given status (fault injection).
    faults: dict[tuple[str, str], int] = attrs.field(factory=dict)
    # Richer faults (counts, Retry-After, dropped watches): see ``faults``.
    fault_plan: Any = None
    _rv: Iterable[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _compacted: dict[str, int] = attrs.field(factory=dict, init=False)
    _served: dict[str, Served] = attrs.field(factory=dict, init=False)
    _infos: dict[str, kmock.ResourceInfo] = attrs.field(factory=dict, init=False)
    _gc_pending: asyncio.TimerHandle | None = attrs.field(default=None, init=False)
    # A collection that could not be scheduled (no running loop): the next write schedules it.
    _gc_owed: bool = attrs.field(default=False, init=False)
    # The stored objects by uid, for the garbage collector's look-ups of owners.
    _uids: dict[str, Key] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, namespaced, subresources, short, categories) in BUILTIN_RESOURCES.items():
            self.declare(key, kind, namespaced=namespaced, subresources=subresources, short_names=short,
                         categories=categories)
        for name in SYSTEM_NAMESPACES:
            self.create(NAMESPACES, None, {"metadata": {"name": name}})

    # ---- declarations ---------------------------------------------------------------------
    def declare(self, key: str, kind: str, *, namespaced: bool = True, subresources: Iterable[str] = (),
                short_names: Iterable[str] = (), categories: Iterable[str] = (), singular: str | None = None,
                list_kind: str | None = None, crd: str | None = None, schema: dict[str, Any] | None = None,
                columns: Iterable[dict[str, Any]] = ()) -> None:
        """Serve a resource ``"group/version/plural"`` (``"v1/pods"`` for the core group)."""
        subresources = tuple(subresources)
        info = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, singular=singular or kind.lower(), verbs=VERBS,
            subresources=set(subresources), shortnames=set(short_names), categories=set(categories),
        )
        self.resources[key] = info
        self._infos[key] = info
        self._served[key] = Served(kind=kind, namespaced=namespaced, subresources=subresources,
                                   list_kind=list_kind or f"{kind}List", crd=crd, schema=schema,
                                   columns=list(columns))

    def undeclare(self, key: str) -> None:
        self._infos.pop(key, None)
        self._served.pop(key, None)
        try:
            del self.resources[key]
        except KeyError:
            pass

    def info(self, key: str) -> kmock.ResourceInfo | None:
        return self._infos.get(key)

    def served(self, key: str) -> Served | None:
        return self._served.get(key)

    def served_resources(self) -> dict[str, Served]:
        return dict(self._served)

    def on_change(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)

    # ---- direct access for tests and controllers ----------------------------------------------
    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.store.get((key, namespace, name))
        return clone(obj) if obj is not None else None

    def list(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [clone(o) for (k, ns, _), o in self.store.items()
                if k == key and (namespace is None or ns == namespace)]

    def put(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as a client would (metadata filled in, events sent)."""
        meta = obj.get("metadata", {})
        existing = self.store.get((key, meta.get("namespace"), meta["name"]))
        if existing is None:
            return self.create(key, meta.get("namespace"), obj)
        return self.replace(key, meta.get("namespace"), meta["name"], obj, status=True)

    def remove(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.delete(key, namespace, name)

    def update_status(self, key: str, namespace: str | None, name: str, status: dict[str, Any], *,
                      manager: str | None = None) -> dict[str, Any]:
        return self.patch(key, namespace, name, {"status": status}, "merge", subresource="status",
                          field_manager=manager)

    def ensure_namespace(self, name: str) -> None:
        if (NAMESPACES, None, name) not in self.store:
            self.create(NAMESPACES, None, {"metadata": {"name": name}})

    def compact(self, resource: str | None = None, *, keep: int = 0) -> None:
        """Forget the events so far but the last ``keep`` (of one resource, or all), as etcd's
        compaction does: watches resumed from before what is kept get 410 Gone."""
        for key in [resource] if resource else list(self._served):
            hist = self.history.setdefault(key, collections.deque())
            kept = list(hist)[-keep:] if keep else []
            self._compacted[key] = kept[0][0] - 1 if kept else self._last_rv
            hist.clear()
            hist.extend(kept)

    # ---- the API semantics ----------------------------------------------------------------
    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)  # type: ignore[call-overload]
        return str(self._last_rv)

    def _emit(self, key: str, event_type: str, obj: dict[str, Any]) -> None:
        snapshot = clone(obj)
        rv = int(obj["metadata"]["resourceVersion"])
        hist = self.history.setdefault(key, collections.deque())
        hist.append((rv, event_type, snapshot))
        while len(hist) > self.history_window:
            self._compacted[key] = hist.popleft()[0]
        ns = obj["metadata"].get("namespace")
        event = WatchEvent(event_type, snapshot)
        for watcher in self.watchers:
            if watcher.resource == key and (watcher.namespace is None or watcher.namespace == ns):
                if watcher.match(snapshot):
                    watcher.queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(event_type, key, snapshot)

    def _has_status(self, key: str) -> bool:
        served = self._served.get(key)
        return bool(served and "status" in served.subresources)

    def _namespaced(self, key: str) -> bool:
        served = self._served.get(key)
        return bool(served is None or served.namespaced)

    def schema_of(self, key: str, obj: dict[str, Any] | None = None) -> Schema:
        served = self._served.get(key)
        if served is None:
            return Schema(None)
        if served.crd:
            return Schema(served.schema)
        return schemas.builtin_schema(key.rsplit("/", 1)[0], served.kind)

    def _not_found(self, key: str, name: str) -> APIError:
        group, plural = _group_of(key), key.rsplit("/", 1)[-1]
        resource = f"{plural}.{group}" if group else plural
        return APIError(404, "NotFound", f'{resource} "{name}" not found',
                        {"name": name, "group": group, "kind": plural})

    def _check_namespace(self, key: str, namespace: str | None) -> None:
        if namespace is None or not self._namespaced(key):
            return
        ns = self.store.get((NAMESPACES, None, namespace))
        if ns is None:
            raise APIError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if ns["metadata"].get("deletionTimestamp"):
            raise APIError(403, "Forbidden", f"{key.rsplit('/', 1)[-1]} is forbidden: unable to create new content "
                                             f"in namespace {namespace} because it is being terminated",
                           {"name": namespace, "kind": "namespaces"})

    def create(self, key: str, namespace: str | None, body: dict[str, Any], *, manager: str | None = None,
               owners: dict[Owner, set] | None = None, validation: str = "Ignore",
               warnings: list[str] | None = None, admit: bool = True) -> dict[str, Any]:
        """Create an object; ``admit=False`` stores it as a CRD without today's schema and rules
        would have (objects stored before a CRD upgrade are not checked again until written)."""
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the body must be a JSON object")
        obj = clone(body)
        meta = obj.setdefault("metadata", {})
        if not self._namespaced(key):
            namespace = None
        elif namespace is None:
            namespace = meta.get("namespace") or "default"
        if meta.get("namespace") not in (None, namespace) and self._namespaced(key):
            raise APIError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise APIError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        name = meta["name"]
        self._check_namespace(key, namespace)
        if (key, namespace, name) in self.store:
            raise APIError(409, "AlreadyExists", f'{_resource_name(key)} "{name}" already exists',
                           {"name": name, "group": _group_of(key), "kind": key.rsplit("/", 1)[-1]})
        if namespace is not None:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        obj["apiVersion"] = key.rsplit("/", 1)[0]
        obj["kind"] = self._served[key].kind if key in self._served else obj.get("kind", "")
        if self._has_status(key):
            obj.pop("status", None)
        if admit:
            obj = self._admit(key, obj, None, validation, warnings)
            self._admission_policies(key, obj, None)
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        self._default(key, obj)
        if owners is None:
            owners = {(manager or "unknown", "Update", ""): field_set(obj, self.schema_of(key))}
        self._record_owners(key, namespace, name, obj, owners)
        self.store[(key, namespace, name)] = obj
        self._uids[meta["uid"]] = (key, namespace, name)
        self._emit(key, "ADDED", obj)
        if key == CRDS:
            self._crd_changed(obj)
        if self._collectable(meta):
            self._schedule_gc()
        return clone(obj)

    def _admit(self, key: str, obj: dict[str, Any], old: dict[str, Any] | None, validation: str,
               warnings: list[str] | None) -> dict[str, Any]:
        """A CRD's structural schema: unknown fields pruned (or refused), defaults, validation."""
        served = self._served.get(key)
        if served is None or key in REVIEWS or (served.crd and not served.schema):
            return obj
        if served.crd:
            pruned = schemas.prune(obj, served.schema)
        else:
            pruned = schemas.prune_typed(obj, self.schema_of(key))
        unknown = _dropped_fields(obj, pruned)
        if unknown and validation == "Strict":
            raise APIError(400, "BadRequest", f"{served.kind} in version \"{key.split('/')[-2]}\" cannot be handled "
                                              f"as a {served.kind}: strict decoding error: "
                                              + ", ".join(f'unknown field "{f}"' for f in unknown))
        if unknown and warnings is not None and validation == "Warn":
            warnings.extend(f'unknown field "{f}"' for f in unknown)
        if key == CRDS:
            _compile_rules(pruned)
        if key == "v1/secrets":
            _check_secret_data(pruned)
        if not served.crd:
            return pruned
        obj = schemas.default(pruned, served.schema)
        found = schemas.problems(obj, old, served.schema)
        if found:
            name = obj["metadata"].get("name", "")
            group = _group_of(key)
            causes = [{"reason": reason, "message": message, "field": field} for field, reason, message in found]
            text = ", ".join(f"{field}: {message}" for field, _, message in found)
            raise APIError(422, "Invalid", f'{served.kind}.{group} "{name}" is invalid: {text}',
                           {"name": name, "group": group, "kind": served.kind, "causes": causes})
        return obj

    def _admission_policies(self, key: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The ValidatingAdmissionPolicies bound to the request: the first refusal is the
        answer, worded as the API server words it."""
        operation = "CREATE" if old is None else "UPDATE"
        namespace = obj["metadata"].get("namespace")
        ns = self.store.get((NAMESPACES, None, namespace)) if namespace else None
        labels = ((ns or {}).get("metadata") or {}).get("labels") or {} if namespace else None
        for (k, _, _), binding in sorted(self.store.items(), key=lambda item: item[0][2]):
            if k != policies.BINDINGS:
                continue
            policy = self.store.get((policies.POLICIES, None, binding["spec"].get("policyName")))
            if policy is None or not policies.matches(policy, binding, key, operation, labels):
                continue
            ref = binding["spec"].get("paramRef")
            params = None
            if ref and policy["spec"].get("paramKind"):
                kind = policy["spec"]["paramKind"]
                param_key = next((k for k, s in self._served.items()
                                  if s.kind == kind["kind"] and k.startswith(kind["apiVersion"] + "/")), None)
                params = self.store.get((param_key, ref.get("namespace") or namespace, ref.get("name")))
                if params is None:
                    if ref.get("parameterNotFoundAction") == "Allow":
                        continue
                    found = [(f"no params found for policy binding with `Deny` parameterNotFoundAction", "Invalid")]
                else:
                    found = policies.refusals(policy, params, obj, old, operation)
            else:
                found = policies.refusals(policy, None, obj, old, operation)
            if found and "Deny" in (binding["spec"].get("validationActions") or ()):
                message, reason = found[0]
                name = obj["metadata"].get("name", "")
                text = (f'{_resource_name(key)} "{name}" is forbidden: ValidatingAdmissionPolicy '
                        f"'{policy['metadata']['name']}' with binding '{binding['metadata']['name']}' denied request: "
                        f"{message}")
                code = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413}.get(reason, 422)
                raise APIError(code, reason, text, {"name": name, "group": _group_of(key),
                                                    "kind": key.rsplit("/", 1)[-1], "causes": [{"message": text}]})

    def _default(self, key: str, obj: dict[str, Any]) -> None:
        """The defaults the real API server fills in and clients rely on."""
        if key == "apps/v1/deployments":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        if key == "v1/services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "None" and "clusterIP" not in spec:
                spec["clusterIP"] = f"10.96.{self._last_rv // 250 % 250}.{self._last_rv % 250 + 1}"
        if key == "v1/secrets":
            obj.setdefault("type", "Opaque")
        if key == NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]

    def _existing(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get((key, namespace, name))
        if obj is None:
            raise self._not_found(key, name)
        return obj

    # ---- field ownership ------------------------------------------------------------------
    def _record_owners(self, key: str, namespace: str | None, name: str, obj: dict[str, Any],
                       owners: dict[Owner, set]) -> None:
        previous = {(e["manager"], e["operation"], e.get("subresource", "")): e
                    for e in obj["metadata"].get("managedFields") or ()}
        entries = []
        for (manager, operation, sub), paths in sorted(owners.items()):
            if not paths:
                continue
            tree = fields_v1(paths)
            before = previous.get((manager, operation, sub))
            entry = {"manager": manager, "operation": operation, "apiVersion": obj.get("apiVersion"),
                     "time": before["time"] if before and before.get("fieldsV1") == tree else _now(),
                     "fieldsType": "FieldsV1", "fieldsV1": tree}
            if sub:
                entry["subresource"] = sub
            entries.append(entry)
        self.managed[(key, namespace, name)] = {k: v for k, v in owners.items() if v}
        if entries:
            obj["metadata"]["managedFields"] = entries
        else:
            obj["metadata"].pop("managedFields", None)

    def _owners_after_update(self, key: str, namespace: str | None, name: str, old: dict[str, Any],
                             new: dict[str, Any], manager: str, subresource: str | None) -> dict[Owner, set]:
        changed, removed = changed_paths(old, new, self.schema_of(key))
        owners = {k: set(v) - changed - removed for k, v in self.managed.get((key, namespace, name), {}).items()}
        mine = (manager, "Update", subresource or "")
        owners[mine] = owners.get(mine, set()) | changed
        return owners

    def _scale(self, key: str, namespace: str | None, name: str, method: str, body: Any,
               manager: str) -> dict[str, Any]:
        """The ``scale`` subresource (``autoscaling/v1`` Scale): read, or write ``spec.replicas``
        as autoscalers do, owned by the writer with subresource ``scale``."""
        obj = self._existing(key, namespace, name)
        if method in ("PUT", "PATCH"):
            replicas = ((body or {}).get("spec") or {}).get("replicas") if isinstance(body, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise APIError(422, "Invalid", "spec.replicas: must be a non-negative integer")
            obj = self.patch(key, namespace, name, {"spec": {"replicas": replicas}}, "merge",
                             subresource="scale", field_manager=manager)
        elif method != "GET":
            raise APIError(405, "MethodNotAllowed", f"{method} is not supported on scale")
        meta = obj["metadata"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                             "resourceVersion": meta.get("resourceVersion")},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(
                               (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items()))}}

    # ---- writes ---------------------------------------------------------------------------
    def _commit(self, key: str, namespace: str | None, name: str, old: dict[str, Any], new: dict[str, Any],
                subresource: str | None, *, manager: str | None = None, owners: dict[Owner, set] | None = None,
                validation: str = "Ignore", warnings: list[str] | None = None) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` with the API server's rules for what may change."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation",
                      "resourceVersion", "managedFields"):
            if field in old_meta:  # managedFields are only read, then replaced by ``_record_owners``
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        if self._has_status(key):
            if subresource == "status":
                new = {**clone(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
            else:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = clone(old["status"])
        if old_meta.get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                raise APIError(422, "Invalid", f'{_resource_name(key)} "{name}" is invalid: metadata.finalizers: '
                                               "Forbidden: no new finalizers can be added if the object is being "
                                               "deleted, found new finalizers " + json.dumps(sorted(added)))
        new = self._admit(key, new, old, validation, warnings)
        if subresource is None:
            self._admission_policies(key, new, old)
        self._default(key, new)
        if owners is None:
            owners = self._owners_after_update(key, namespace, name, old, new, manager or "unknown", subresource)
        self._record_owners(key, namespace, name, new, owners)
        if new == old:
            return clone(old)  # a no-op write changes nothing and notifies nobody
        if _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._purge(key, namespace, name, new)
        self.store[(key, namespace, name)] = new
        self._emit(key, "MODIFIED", new)
        if key == CRDS:
            self._crd_changed(new)
        if new["metadata"].get("ownerReferences") != old_meta.get("ownerReferences") and \
                self._collectable(new["metadata"]):
            self._schedule_gc()
        return clone(new)

    def replace(self, key: str, namespace: str | None, name: str, body: dict[str, Any], *,
                subresource: str | None = None, status: bool = False, manager: str | None = None,
                validation: str = "Ignore", warnings: list[str] | None = None) -> dict[str, Any]:
        old = self._existing(key, namespace, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise _conflict(key, name)
        if status and self._has_status(key):  # direct writes by tests keep the given status
            result = self._commit(key, namespace, name, old, clone(body), None, manager=manager)
            if "status" in body:
                current = self._existing(key, namespace, name)
                result = self._commit(key, namespace, name, current, clone(body), "status", manager=manager)
            return result
        return self._commit(key, namespace, name, old, clone(body), subresource, manager=manager,
                            validation=validation, warnings=warnings)

    def patch(self, key: str, namespace: str | None, name: str, body: Any, patch_type: str, *,
              subresource: str | None = None, field_manager: str | None = None, force: bool = False,
              validation: str = "Ignore", warnings: list[str] | None = None) -> dict[str, Any]:
        if patch_type == "apply":
            return self._apply(key, namespace, name, body, subresource=subresource,
                               manager=field_manager or "unknown", force=force, validation=validation,
                               warnings=warnings)
        old = self._existing(key, namespace, name)
        try:
            if patch_type == "json":
                if not isinstance(body, list):
                    raise APIError(400, "BadRequest", "a JSON patch must be a list of operations")
                new = json_patch(old, body)
            else:
                if not isinstance(body, dict):
                    raise APIError(400, "BadRequest", "a merge patch must be an object")
                rv = (body.get("metadata") or {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise _conflict(key, name)
                if patch_type == "strategic":
                    served = self._served.get(key)
                    if served and served.crd:
                        raise APIError(415, "UnsupportedMediaType",
                                       "the body of the request was in an unknown format - accepted media types "
                                       "include: application/json-patch+json, application/merge-patch+json, "
                                       "application/apply-patch+yaml")
                    new = strategic_merge_patch(old, body, self.schema_of(key))
                else:
                    new = merge_patch(old, body)
        except PatchTestFailed as exc:
            raise APIError(422, "Invalid", str(exc)) from None
        except PatchError as exc:
            raise APIError(422, "Invalid", str(exc)) from None
        if not isinstance(new, dict):
            raise APIError(422, "Invalid", "the patched object is not an object")
        return self._commit(key, namespace, name, old, new, subresource, manager=field_manager,
                            validation=validation, warnings=warnings)

    def _apply(self, key: str, namespace: str | None, name: str, body: Any, *, subresource: str | None,
               manager: str, force: bool, validation: str, warnings: list[str] | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "an apply patch must be an object")
        config = _without_nulls(body)  # a copy: maps and lists are built anew
        meta = config.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise APIError(400, "BadRequest", "the name of the object does not match the name of the URL")
        meta["name"] = name
        if self._has_status(key):
            if subresource == "status":
                config = {k: v for k, v in config.items() if k in ("apiVersion", "kind", "metadata", "status")}
            else:
                config.pop("status", None)
        schema = self.schema_of(key)
        mine = field_set(config, schema)
        owner: Owner = (manager, "Apply", subresource or "")
        current = self.store.get((key, namespace, name))
        if current is None:
            if subresource:
                raise self._not_found(key, name)
            return self.create(key, namespace, config, owners={owner: mine}, validation=validation,
                               warnings=warnings)
        owners = {k: set(v) for k, v in self.managed.get((key, namespace, name), {}).items()}
        previous = owners.pop(owner, set())
        clashes = conflicts(current, config, mine, owners)
        if clashes and not force:
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}"'
                       + (f" with subresource \"{s}\"" if s else "") + f" using {current['apiVersion']}",
                       "field": dotted(p)} for (m, op, s), paths in sorted(clashes.items()) for p in sorted(paths)]
            lines = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
            raise APIError(409, "Conflict", f"Apply failed with {len(causes)} conflict"
                           f"{'s' if len(causes) != 1 else ''}: {lines}", {"causes": causes})
        for other, paths in clashes.items():
            owners[other] -= paths
        new = apply_merge(current, config, schema)
        remove_unowned(new, previous - mine, set().union(*owners.values()) if owners else set())
        owners[owner] = mine
        return self._commit(key, namespace, name, current, new, subresource, owners=owners,
                            validation=validation, warnings=warnings)

    # ---- deletion and garbage collection -----------------------------------------------------
    def delete(self, key: str, namespace: str | None, name: str, *, propagation: str | None = None,
               preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        obj = self._existing(key, namespace, name)
        for field, value in (preconditions or {}).items():
            if value is not None and obj["metadata"].get(field) != value:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {_resource_name(key)} "{name}": '
                                                f"Precondition failed: {field}: {value}")
        propagation = propagation or "Background"
        if propagation == "Orphan":
            self._orphan(obj["metadata"]["uid"])
        finalizers = list(obj["metadata"].get("finalizers") or ())
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers and self._dependents(obj):
            finalizers.append("foregroundDeletion")
        if key == NAMESPACES and "kubernetes" in ((obj.get("spec") or {}).get("finalizers") or ()):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["status"] = {"phase": "Terminating"}
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self._emit(key, "MODIFIED", obj)
                self._schedule_gc()
            return clone(obj)
        if finalizers:
            if not obj["metadata"].get("deletionTimestamp") or finalizers != obj["metadata"].get("finalizers"):
                if not obj["metadata"].get("deletionTimestamp"):
                    obj["metadata"]["deletionTimestamp"] = _now()
                    obj["metadata"]["deletionGracePeriodSeconds"] = 0
                    obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
                obj["metadata"]["finalizers"] = finalizers
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self._emit(key, "MODIFIED", obj)
                self._schedule_gc()
            return clone(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        return self._purge(key, namespace, name, obj)

    def _purge(self, key: str, namespace: str | None, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.store.pop((key, namespace, name), None)
        self._uids.pop(obj["metadata"].get("uid", ""), None)
        self.managed.pop((key, namespace, name), None)
        self._emit(key, "DELETED", obj)
        if key == CRDS:
            self._crd_removed(obj)
        self._schedule_gc()
        return clone(obj)

    def _dependents(self, owner: dict[str, Any]) -> list[Key]:
        uid = owner["metadata"]["uid"]
        return [k for k, o in self.store.items()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or ())]

    def _orphan(self, uid: str) -> None:
        for (key, ns, name), obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                new = clone(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid] or None
                if new["metadata"]["ownerReferences"] is None:
                    del new["metadata"]["ownerReferences"]
                self._commit(key, ns, name, obj, new, None, manager="garbage-collector")

    def _collectable(self, meta: dict[str, Any]) -> bool:
        """Whether a written object may be garbage already: an owner it names is gone or
        being deleted in the foreground (or an earlier collection is owed). Objects whose
        owners all live wait for a deletion to be looked at, as with the real collector,
        which follows changes rather than rescanning everything on every write."""
        if self._gc_owed:
            return True
        for ref in meta.get("ownerReferences") or ():
            owner = self.store.get(self._uids.get(ref.get("uid"), ("", None, "")))
            if owner is None or owner["metadata"].get("uid") != ref.get("uid") or \
                    "foregroundDeletion" in (owner["metadata"].get("finalizers") or ()):
                return True
        return False

    def _schedule_gc(self) -> None:
        if self._gc_pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._gc_owed = True  # no loop: collected on the next write made from one
            return
        self._gc_pending = loop.call_later(self.gc_delay, self.collect_garbage)

    def collect_garbage(self) -> None:
        """One pass of the garbage collector (run in the background after deletions)."""
        self._gc_pending = None
        self._gc_owed = False
        live = {o["metadata"]["uid"]: o for o in self.store.values()}
        again = False
        for (key, ns, name), obj in list(self.store.items()):
            if (key, ns, name) not in self.store or obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if not refs:
                continue
            owners = [live[r["uid"]] for r in refs if r.get("uid") in live]
            foreground = any("foregroundDeletion" in (o["metadata"].get("finalizers") or ()) for o in owners)
            if not owners or foreground:
                self.delete(key, ns, name, propagation="Foreground" if foreground else "Background")
                again = True
        for (key, ns, name), obj in list(self.store.items()):
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            if "foregroundDeletion" in (meta.get("finalizers") or ()) and not self._dependents(obj):
                new = clone(obj)
                new["metadata"]["finalizers"] = [f for f in meta["finalizers"] if f != "foregroundDeletion"]
                self._commit(key, ns, name, obj, new, None, manager="garbage-collector")
            if key == NAMESPACES:
                again |= self._finish_namespace(obj)
        if again:
            self._schedule_gc()

    def _finish_namespace(self, ns: dict[str, Any]) -> bool:
        name = ns["metadata"]["name"]
        contents = [(k, n, o) for (k, n, o) in self.store if n == name and k != NAMESPACES]
        for key, n, obj_name in contents:
            if not self.store[(key, n, obj_name)]["metadata"].get("deletionTimestamp"):
                self.delete(key, n, obj_name)
        if any((k, n, o) in self.store for k, n, o in contents):
            return True
        obj = self.store[(NAMESPACES, None, name)]
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._purge(NAMESPACES, None, name, obj)
        return False

    # ---- CRDs -----------------------------------------------------------------------------
    def _crd_changed(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names, group = spec.get("names") or {}, spec.get("group", "")
        served = {v["name"] for v in spec.get("versions") or () if v.get("served", True)}
        for key, info in list(self._served.items()):
            if info.crd == crd["metadata"]["name"] and key.split("/")[-2] not in served:
                self.undeclare(key)
        for version in spec.get("versions") or ():
            if not version.get("served", True):
                continue
            self.declare(
                resource_key(group, version["name"], names["plural"]), names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                subresources=tuple((version.get("subresources") or {}).keys()),
                short_names=names.get("shortNames") or (), categories=names.get("categories") or (),
                singular=names.get("singular"), list_kind=names.get("listKind"), crd=crd["metadata"]["name"],
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                columns=version.get("additionalPrinterColumns") or (),
            )
        status = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec.get("versions") or () if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _now()}
                for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
            ],
        }
        if (crd.get("status") or {}).get("acceptedNames") != names:
            stored = self.store[(CRDS, None, crd["metadata"]["name"])]
            new = {**clone(stored), "status": status}
            self._commit(CRDS, None, crd["metadata"]["name"], stored, new, "status",
                         manager="kube-apiserver")

    def _crd_removed(self, crd: dict[str, Any]) -> None:
        for key, info in list(self._served.items()):
            if info.crd == crd["metadata"]["name"]:
                for (k, ns, name) in [k for k in self.store if k[0] == key]:
                    gone = self.store.pop((k, ns, name), None)
                    self._uids.pop(((gone or {}).get("metadata") or {}).get("uid", ""), None)
                self.undeclare(key)

    def review(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        if key == "authorization.k8s.io/v1/subjectaccessreviews":
            allowed, reason = self.access_policy(spec)
            status = {"allowed": bool(allowed), "reason": reason}
            if not allowed:
                status["denied"] = True
        else:
            user = self.tokens.get(spec.get("token", ""))
            status = {"authenticated": True, "user": user} if user else {"authenticated": False,
                                                                          "error": "invalid bearer token"}
        return {"apiVersion": key.rsplit("/", 1)[0], "kind": self._served[key].kind, "metadata": {}, "spec": spec,
                "status": status}

    # ---- HTTP -----------------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "GET":
            answer = discovery.answer(self, raw_request.path)
            if answer is not None:
                return aiohttp.web.json_response(answer)
            if raw_request.path.startswith("/openapi/"):
                return aiohttp.web.json_response(
                    APIError(404, "NotFound", "the server could not find the requested resource").status(), status=404)
        # kmock reads "/api/v1/namespaces[/<name>]" as a namespace prefix with no resource:
        # Namespaces, the cluster-scoped resource, are parsed here instead.
        match = _NAMESPACES_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        request = rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers), body=body,
            text=body.decode(errors="replace"), resource=kmock.resource("", "v1", "namespaces"),
            namespace=None, name=match.group(1), subresource=match.group(2),
        )
        self._requests.append(request)
        return await self._handle(request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or not res.plural or request.params.get("watch") not in (None, "true", "1", "false"):
            return await super()._handle(request)
        key = resource_key(res.group, res.version, res.plural)
        if self._served.get(key) is None:
            return aiohttp.web.json_response(
                APIError(404, "NotFound", "the server could not find the requested resource").status(), status=404)
        if self.fault_plan is not None:
            injected = self.fault_plan.answer(request.method.value, key, request.url.path)
            if injected is not None:
                return injected
        warnings: list[str] = []
        try:
            fault = self.faults.get((request.method.value, key))
            if fault:
                raise APIError(fault, "InternalError", "injected fault")
            response = await self._serve(request, key, warnings)
        except APIError as exc:
            response = aiohttp.web.json_response(exc.status(), status=exc.code)
        if warnings and not response.prepared:
            response.headers["Warning"] = ", ".join(f'299 - "{w}"' for w in warnings)
        return response

    async def _serve(self, request: rendering.Request, key: str, warnings: list[str]) -> aiohttp.web.StreamResponse:
        method, ns, name, sub = request.method.value, request.namespace, request.name, request.subresource
        if not self._namespaced(key):
            ns = None
        params = request.params
        body: Any = None
        ctype = request.headers.get("Content-Type", "")
        if request.body and "protobuf" in ctype:
            try:
                body = protobuf.decode(request.body)
            except protobuf.ProtobufError as exc:
                raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                            f"{exc}; accepted media types include: "
                                                            "application/json, application/yaml") from None
        elif request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                try:
                    body = yaml.safe_load(request.body)
                except yaml.YAMLError:
                    raise APIError(400, "BadRequest", "the body is neither JSON nor YAML") from None
        validation = params.get("fieldValidation") or "Warn"
        manager = params.get("fieldManager") or _manager_of(request.headers.get("User-Agent", ""))
        dry_run = bool(params.get("dryRun"))
        table = "as=Table" in request.headers.get("Accept", "")
        if key in REVIEWS:
            if method != "POST":
                raise APIError(405, "MethodNotAllowed", "reviews are create-only")
            return aiohttp.web.json_response(self.review(key, body or {}), status=201)
        if name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, key, ns)
            if method == "GET":
                listing = self._list(request, key, ns)
                if _metadata_only(request):
                    return aiohttp.web.json_response({
                        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                        "metadata": listing["metadata"], "items": [_partial(o) for o in listing["items"]]})
                if table:
                    return aiohttp.web.json_response(tables.table(self._served[key], listing["items"], params,
                                                                  listing["metadata"]))
                return aiohttp.web.json_response(listing)
            if method == "POST":
                if dry_run:
                    return aiohttp.web.json_response(body, status=201)
                if isinstance(body, dict) and (body.get("metadata") or {}).get("namespace") and ns is None \
                        and self._namespaced(key):
                    ns = body["metadata"]["namespace"]
                created = self.create(key, ns, body, manager=manager, validation=validation, warnings=warnings)
                return aiohttp.web.json_response(created, status=201)
            if method == "DELETE":
                gone = [self.delete(key, n, o) for (k, n, o) in list(self.store)
                        if k == key and (ns is None or n == ns) and self._selector(request)(self.store[(k, n, o)])]
                return aiohttp.web.json_response({"apiVersion": key.rsplit("/", 1)[0],
                                                  "kind": self._served[key].list_kind,
                                                  "metadata": {}, "items": gone})
            raise APIError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        if sub == "scale" and "scale" in self._served[key].subresources and not dry_run:
            return aiohttp.web.json_response(self._scale(key, ns, name, method, body, manager))
        if sub not in (None, "status") or (sub == "status" and not self._has_status(key)):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            obj = clone(self._existing(key, ns, name))
            if table:
                return aiohttp.web.json_response(tables.table(self._served[key], [obj], params, {}))
            return aiohttp.web.json_response(obj)
        if dry_run and method in ("PUT", "PATCH", "DELETE"):
            return aiohttp.web.json_response(clone(self._existing(key, ns, name)))
        if method == "PUT":
            return aiohttp.web.json_response(self.replace(key, ns, name, body or {}, subresource=sub,
                                                          manager=manager, validation=validation,
                                                          warnings=warnings))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            patch_type = {
                "application/json-patch+json": "json",
                "application/merge-patch+json": "merge",
                "application/strategic-merge-patch+json": "strategic",
                "application/apply-patch+yaml": "apply",
                "application/apply-patch+cbor": None,
            }.get(ctype)
            if patch_type is None:
                raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                            f"{ctype!r} is not supported")
            if patch_type == "apply" and not params.get("fieldManager"):
                raise APIError(400, "BadRequest", "PATCH, application/apply-patch+yaml: fieldManager is required")
            created = patch_type == "apply" and (key, ns, name) not in self.store
            obj = self.patch(key, ns, name, body, patch_type, subresource=sub, field_manager=manager,
                             force=params.get("force") in ("true", "1"), validation=validation, warnings=warnings)
            return aiohttp.web.json_response(obj, status=201 if created else 200)
        if method == "DELETE":
            options = body if isinstance(body, dict) else {}
            propagation = options.get("propagationPolicy") or params.get("propagationPolicy")
            if options.get("orphanDependents") is True or params.get("orphanDependents") == "true":
                propagation = "Orphan"
            result = self.delete(key, ns, name, propagation=propagation, preconditions=options.get("preconditions"))
            gone = (key, ns, name) not in self.store
            return aiohttp.web.json_response(result, status=200 if gone else 202)
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported")

    def _selector(self, request: rendering.Request) -> Callable[[dict[str, Any]], bool]:
        labels = _parse_selector(request.params.get("labelSelector", ""))
        fields = _parse_selector(request.params.get("fieldSelector", ""))

        def match(obj: dict[str, Any]) -> bool:
            have = obj.get("metadata", {}).get("labels") or {}
            for k, op, v in labels:
                if (op == "=" and have.get(k) != v) or (op == "!=" and have.get(k) == v) or \
                        (op == "exists" and k not in have) or (op == "!exists" and k in have) or \
                        (op == "in" and have.get(k) not in v.split("|")) or \
                        (op == "notin" and have.get(k) in v.split("|")):
                    return False
            for k, op, v in fields:
                node: Any = obj
                for part in k.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                if (op == "=" and node != v) or (op == "!=" and node == v):
                    return False
            return True

        return match

    def _list(self, request: rendering.Request, key: str, ns: str | None) -> dict[str, Any]:
        """A list, in pages of ``limit`` objects when asked, ordered by namespace and name,
        a page going on with the ``continue`` token of the one before. Every page carries
        the first one's resourceVersion; with no snapshots to serve them from, later pages
        show objects as they are now (a watch from that resourceVersion catches up), and a
        token from before the history window is 410 Gone, as a compacted one is."""
        match = self._selector(request)
        limit_text = request.params.get("limit") or "0"
        if not limit_text.isdigit():
            raise APIError(400, "BadRequest", f"invalid limit {limit_text!r}")
        limit, version, after = int(limit_text), str(self._last_rv), None
        if request.params.get("continue"):
            version, after = _continued(request.params["continue"])
            if int(version) < self._compacted.get(key, 0):
                raise APIError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                               "list result. You can start a new list without the continue parameter.")
        found = sorted((n or "", name) for (k, n, name) in self.store if k == key and (ns is None or n == ns))
        if after is not None:
            found = found[bisect.bisect_right(found, after):]
        items: list[dict[str, Any]] = []
        meta: dict[str, Any] = {"resourceVersion": version}
        for at, (n, name) in enumerate(found):
            obj = self.store[(key, n or None, name)]
            if not match(obj):
                continue
            if limit and len(items) == limit:
                last = items[-1]["metadata"]
                meta["continue"] = _continue_token(version, (last.get("namespace") or "", last["name"]))
                meta["remainingItemCount"] = sum(match(self.store[(key, m or None, o)]) for m, o in found[at:])
                break
            items.append(clone(obj))
        return {"apiVersion": key.rsplit("/", 1)[0], "kind": self._served[key].list_kind, "metadata": meta,
                "items": items}

    def _bookmark(self, key: str, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self._last_rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"apiVersion": key.rsplit("/", 1)[0], "kind": self._served[key].kind,
                                               "metadata": meta}}

    async def _watch(self, request: rendering.Request, key: str, ns: str | None) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        params = request.params
        match = self._selector(request)
        watcher = Watcher(resource=key, namespace=ns, match=match, agent=request.headers.get("User-Agent", ""))
        since = params.get("resourceVersion")
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        backlog: list[dict[str, Any]] = []
        if since and since != "0" and params.get("sendInitialEvents") != "true":
            if not since.isdigit():
                raise APIError(400, "BadRequest", f"invalid resource version {since!r}")
            compacted = self._compacted.get(key, 0)
            if int(since) < compacted:
                gone = APIError(410, "Expired", f"too old resource version: {since} ({compacted})")
                backlog.append({"type": "ERROR", "object": gone.status()})
            else:
                for rv, event_type, obj in self.history.get(key, ()):
                    if rv > int(since) and (ns is None or obj["metadata"].get("namespace") == ns) and match(obj):
                        backlog.append({"type": event_type, "object": obj})
        else:
            backlog = [{"type": "ADDED", "object": clone(o)} for (k, n, _), o in self.store.items()
                       if k == key and (ns is None or n == ns) and match(o)]
            if params.get("sendInitialEvents") == "true" and bookmarks:
                backlog.append(self._bookmark(key, initial_end=True))
        self.watchers.append(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw)
            partial = _metadata_only(request)

            table = "as=Table" in request.headers.get("Accept", "")

            def render(event: dict[str, Any]) -> bytes:
                if table and event["type"] not in ("ERROR", "BOOKMARK"):  # kubectl get -w
                    return json.dumps({"type": event["type"], "object": tables.table(
                        self._served[key], [event["object"]], params, {})}).encode() + b"\n"
                encoded = event.encoded.get(partial) if isinstance(event, WatchEvent) else None
                if encoded is None:
                    shown = event
                    if partial and event["type"] not in ("ERROR", "BOOKMARK"):
                        shown = {"type": event["type"], "object": _partial(event["object"])}
                    encoded = json.dumps(shown).encode() + b"\n"
                    if isinstance(event, WatchEvent):
                        event.encoded[partial] = encoded
                return encoded

            for event in backlog:
                await response.write(render(event))
            if backlog and backlog[0]["type"] == "ERROR":
                return response
            timeout = float(params.get("timeoutSeconds") or 1800)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and not watcher.stalled and loop.time() < deadline:
                        await response.write(json.dumps(self._bookmark(key)).encode() + b"\n")
                    continue
                if event is None:  # dropped by a fault
                    break
                await response.write(render(event))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(watcher)
        return response


def _continue_token(version: str, after: tuple[str, str]) -> str:
    """An opaque ``continue`` token: the list's resourceVersion and the last key served."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": int(version), "start": "/".join(after)})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _continued(token: str) -> tuple[str, tuple[str, str]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, _, name = raw["start"].partition("/")
        return str(int(raw["rv"])), (namespace, name)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise APIError(400, "BadRequest", "continue key is not valid") from None


def _metadata_only(request: rendering.Request) -> bool:
    """``Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1``."""
    return "as=PartialObjectMetadata" in request.headers.get("Accept", "")


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": clone(obj.get("metadata") or {})}


_NAMESPACES_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?/?")


def _group_of(key: str) -> str:
    parts = key.split("/")
    return parts[0] if len(parts) == 3 else ""


def _resource_name(key: str) -> str:
    group, plural = _group_of(key), key.rsplit("/", 1)[-1]
    return f"{plural}.{group}" if group else plural


def _conflict(key: str, name: str) -> APIError:
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {_resource_name(key)} "{name}": the object '
                                     "has been modified; please apply your changes to the latest version and try "
                                     "again", {"name": name, "group": _group_of(key), "kind": key.rsplit("/", 1)[-1]})


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _manager_of(user_agent: str) -> str:
    """The field manager of a request that names none: its User-Agent's product, as the server does."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


def _without_nulls(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_nulls(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_without_nulls(v) for v in doc]
    return doc


def _dropped_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key, value in before.items():
            path = f"{prefix}.{key}" if prefix else key
            if key not in after:
                out.append(path)
            else:
                out += _dropped_fields(value, after[key], path)
        return out
    if isinstance(before, list) and isinstance(after, list):
        return [f for i, (b, a) in enumerate(zip(before, after)) for f in _dropped_fields(b, a, f"{prefix}[{i}]")]
    return []


def _parse_selector(text: str) -> list[tuple[str, str, str]]:
    out = []
    for term in filter(None, (t.strip() for t in re.split(r",(?![^(]*\))", text))):
        set_match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if set_match:
            values = "|".join(v.strip() for v in set_match.group(3).split(","))
            out.append((set_match.group(1), set_match.group(2), values))
        elif "!=" in term:
            k, v = term.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "==" in term or "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            out.append((k.strip(), "=", v.strip()))
        elif term.startswith("!"):
            out.append((term[1:], "!exists", ""))
        else:
            out.append((term, "exists", ""))
    return out


def _compile_rules(crd: dict[str, Any]) -> None:
    """Refuse a CRD whose CEL rules read a field CEL gives no type, as the API server does
    when it compiles them (``undefined field``)."""
    causes = []
    for version in (crd.get("spec") or {}).get("versions") or ():
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
        for path, field in cel_undefined_fields(schema):
            causes.append({"reason": "FieldValueInvalid",
                           "field": f"spec.validation.openAPIV3Schema{path}.x-kubernetes-validations",
                           "message": f"compilation failed: ERROR: undefined field '{field}'"})
    if causes:
        name = crd.get("metadata", {}).get("name", "")
        text = ", ".join(f"{c['field']}: Invalid value: {c['message']}" for c in causes)
        raise APIError(422, "Invalid", f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {text}',
                       {"name": name, "group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition",
                        "causes": causes})


def _check_secret_data(secret: dict[str, Any]) -> None:
    """A Secret's ``data`` must be base64, as the API server decodes it into bytes."""
    for value in (secret.get("data") or {}).values():
        try:
            base64.b64decode(value if isinstance(value, str) else "", validate=True)
        except ValueError:
            raise APIError(400, "BadRequest", 'Secret in version "v1" cannot be handled as a Secret: '
                                              "illegal base64 data") from None
