"""An in-memory Kubernetes API server for tests: kmock's ``KubernetesEmulator`` extended
with what operators and API clients rely on.

Added over kmock: ``metadata.uid``/``generation``/``resourceVersion``/``creationTimestamp``,
optimistic concurrency, the ``status`` subresource, PUT, merge/strategic/JSON patches and
server-side apply, ``generateName``, label and field selectors, watches resumable from a
resourceVersion (410 Gone when too old), finalizers with ``deletionTimestamp``, garbage
collection through ``ownerReferences``, and answers to SubjectAccessReview and
TokenReview that tests configure. Controllers that act on objects (such as the
Deployment controller stand-in) subscribe through ``on_change``.

Discovery is kmock's: resources are declared in ``self.resources``. What it does not do:
admission webhooks, validation against OpenAPI schemas, RBAC on the emulator's own API.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import itertools
import json
import re
import uuid
from typing import Any, Callable, Iterable

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from .patching import PatchError, PatchTestFailed, json_patch, merge_patch, server_side_apply

Key = tuple[str, str | None, str]  # (resource "group/version/plural", namespace, name)
ChangeListener = Callable[[str, str, dict[str, Any]], None]  # (event type, resource key, object)

# Built-in resources the emulator serves, with their kinds and subresources.
BUILTIN_RESOURCES: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "v1/namespaces": ("Namespace", False, ("status",)),
    "v1/configmaps": ("ConfigMap", True, ()),
    "v1/secrets": ("Secret", True, ()),
    "v1/services": ("Service", True, ("status",)),
    "v1/pods": ("Pod", True, ("status",)),
    "v1/events": ("Event", True, ()),
    "v1/serviceaccounts": ("ServiceAccount", True, ()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, ("status",)),
    "apps/v1/deployments": ("Deployment", True, ("status", "scale")),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, ("status",)),
    "events.k8s.io/v1/events": ("Event", True, ()),
    "coordination.k8s.io/v1/leases": ("Lease", True, ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ("status",)),
    "authorization.k8s.io/v1/subjectaccessreviews": ("SubjectAccessReview", False, ()),
    "authentication.k8s.io/v1/tokenreviews": ("TokenReview", False, ()),
}
# Resources answered on create and never stored.
REVIEWS = {"authorization.k8s.io/v1/subjectaccessreviews", "authentication.k8s.io/v1/tokenreviews"}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "code": self.code, "reason": self.reason, "message": self.message}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_key(group: str, version: str, plural: str) -> str:
    return f"{group}/{version}/{plural}" if group else f"{version}/{plural}"


def allow_everything(spec: dict[str, Any]) -> tuple[bool, str]:
    return True, "allowed by the emulator's default policy"


@attrs.define(kw_only=True)
class Watcher:
    resource: str
    namespace: str | None
    match: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue = attrs.field(factory=asyncio.Queue)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """A stateful Kubernetes API over HTTP; objects are in ``self.store``."""

    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # Events per resource, kept for resuming watches: (resourceVersion, type, object).
    history: dict[str, collections.deque] = attrs.field(factory=dict, init=False)
    history_size: int = 20_000
    # What each field manager last applied to each object (server-side apply).
    applied: dict[Key, dict[str, dict[str, Any]]] = attrs.field(factory=dict, init=False)
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
    _kinds: dict[str, str] = attrs.field(factory=dict, init=False)
    _infos: dict[str, kmock.ResourceInfo] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, namespaced, subresources) in BUILTIN_RESOURCES.items():
            self.declare(key, kind, namespaced=namespaced, subresources=subresources)

    # ---- declarations ---------------------------------------------------------------------
    def declare(self, key: str, kind: str, *, namespaced: bool = True, subresources: Iterable[str] = ()) -> None:
        """Serve a resource ``"group/version/plural"`` (``"v1/pods"`` for the core group)."""
        info = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, singular=kind.lower(), verbs=VERBS, subresources=set(subresources)
        )
        self.resources[key] = info
        self._kinds[key] = kind
        self._infos[key] = info

    def info(self, key: str) -> kmock.ResourceInfo | None:
        return self._infos.get(key)

    def on_change(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)

    # ---- direct access for tests and controllers ----------------------------------------------
    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.store.get((key, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, key: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, ns, _), o in self.store.items()
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

    def update_status(self, key: str, namespace: str | None, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.patch(key, namespace, name, {"status": status}, "merge", subresource="status")

    # ---- the API semantics ----------------------------------------------------------------
    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)  # type: ignore[call-overload]
        return str(self._last_rv)

    def _emit(self, key: str, event_type: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        rv = int(obj["metadata"]["resourceVersion"])
        hist = self.history.setdefault(key, collections.deque(maxlen=self.history_size))
        hist.append((rv, event_type, snapshot))
        ns = obj["metadata"].get("namespace")
        for watcher in self.watchers:
            if watcher.resource == key and (watcher.namespace is None or watcher.namespace == ns):
                if watcher.match(snapshot):
                    watcher.queue.put_nowait({"type": event_type, "object": snapshot})
        for listener in list(self.listeners):
            listener(event_type, key, snapshot)

    def _has_status(self, key: str) -> bool:
        info = self.info(key)
        return bool(info and "status" in info.subresources)

    def _namespaced(self, key: str) -> bool:
        info = self.info(key)
        return bool(info is None or info.namespaced)

    def create(self, key: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not self._namespaced(key):
            namespace = None
        elif namespace is None:
            namespace = meta.get("namespace") or "default"
        if meta.get("namespace") not in (None, namespace):
            raise APIError(400, "BadRequest", "the namespace of the object does not match the namespace of the URL")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:10]
            else:
                raise APIError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        name = meta["name"]
        if (key, namespace, name) in self.store:
            raise APIError(409, "AlreadyExists", f'{key.rsplit("/", 1)[-1]} "{name}" already exists')
        if namespace is not None:
            meta["namespace"] = namespace
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        obj.setdefault("apiVersion", key.rsplit("/", 1)[0])
        obj.setdefault("kind", self._kinds.get(key, ""))
        if self._has_status(key):
            obj.pop("status", None)
        self._default(key, obj)
        self.store[(key, namespace, name)] = obj
        self._emit(key, "ADDED", obj)
        return copy.deepcopy(obj)

    def _default(self, key: str, obj: dict[str, Any]) -> None:
        """The defaults the real API server fills in and clients rely on."""
        if key == "apps/v1/deployments":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        if key == "v1/services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "None" and "clusterIP" not in spec:
                spec["clusterIP"] = f"10.96.{self._last_rv // 250 % 250}.{self._last_rv % 250 + 1}"

    def _existing(self, key: str, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get((key, namespace, name))
        if obj is None:
            raise APIError(404, "NotFound", f'{key.rsplit("/", 1)[-1]} "{name}" not found')
        return obj

    def _commit(self, key: str, namespace: str | None, name: str, old: dict[str, Any], new: dict[str, Any],
                subresource: str | None) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` with the API server's rules for what may change."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation",
                      "resourceVersion"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        if self._has_status(key):
            if subresource == "status":
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
            else:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        self._default(key, new)
        if new == old:
            return copy.deepcopy(old)  # a no-op write changes nothing and notifies nobody
        spec_of = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}
        if spec_of(new) != spec_of(old):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.store.pop((key, namespace, name))
            self.applied.pop((key, namespace, name), None)
            self._emit(key, "DELETED", new)
            self._collect_garbage(new["metadata"]["uid"])
            return copy.deepcopy(new)
        self.store[(key, namespace, name)] = new
        self._emit(key, "MODIFIED", new)
        return copy.deepcopy(new)

    def replace(self, key: str, namespace: str | None, name: str, body: dict[str, Any], *,
                subresource: str | None = None, status: bool = False) -> dict[str, Any]:
        old = self._existing(key, namespace, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {key.rsplit("/", 1)[-1]} "{name}": '
                                            "the object has been modified; please apply your changes to the latest "
                                            "version and try again")
        if status and self._has_status(key):  # direct writes by tests keep the given status
            result = self._commit(key, namespace, name, old, copy.deepcopy(body), None)
            if "status" in body:
                current = self._existing(key, namespace, name)
                result = self._commit(key, namespace, name, current, copy.deepcopy(body), "status")
            return result
        return self._commit(key, namespace, name, old, copy.deepcopy(body), subresource)

    def patch(self, key: str, namespace: str | None, name: str, body: Any, patch_type: str, *,
              subresource: str | None = None, field_manager: str | None = None) -> dict[str, Any]:
        if patch_type == "apply":
            manager = field_manager or "unknown"
            if not isinstance(body, dict):
                raise APIError(400, "BadRequest", "an apply patch must be an object")
            current = self.store.get((key, namespace, name))
            previous = self.applied.get((key, namespace, name), {}).get(manager)
            if current is None:
                if subresource:
                    raise APIError(404, "NotFound", f'{key.rsplit("/", 1)[-1]} "{name}" not found')
                created = self.create(key, namespace, body)
                self.applied.setdefault((key, namespace, name), {})[manager] = copy.deepcopy(body)
                return created
            new = server_side_apply(current, body, previous)
            result = self._commit(key, namespace, name, current, new, subresource)
            if (key, namespace, name) in self.store:
                self.applied.setdefault((key, namespace, name), {})[manager] = copy.deepcopy(body)
            return result
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
                    raise APIError(409, "Conflict", "the object has been modified")
                new = merge_patch(old, body)
        except PatchTestFailed as exc:
            raise APIError(422, "Invalid", str(exc)) from None
        except PatchError as exc:
            raise APIError(422, "Invalid", str(exc)) from None
        return self._commit(key, namespace, name, old, new, subresource)

    def delete(self, key: str, namespace: str | None, name: str, *, propagation: str = "Background") -> dict[str, Any]:
        obj = self._existing(key, namespace, name)
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self._emit(key, "MODIFIED", obj)
            return copy.deepcopy(obj)
        self.store.pop((key, namespace, name))
        self.applied.pop((key, namespace, name), None)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(key, "DELETED", obj)
        if propagation != "Orphan":
            self._collect_garbage(obj["metadata"]["uid"])
        return copy.deepcopy(obj)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Delete the dependents whose owners are all gone (background cascading deletion)."""
        live = {o["metadata"]["uid"] for o in self.store.values()}
        for (key, ns, name), obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs) and not any(r.get("uid") in live for r in refs):
                if (key, ns, name) in self.store:
                    self.delete(key, ns, name)

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
        return {"apiVersion": key.rsplit("/", 1)[0], "kind": self._kinds[key], "metadata": {}, "spec": spec,
                "status": status}

    # ---- HTTP -----------------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
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
        if self.info(key) is None:
            return await super()._handle(request)
        if self.fault_plan is not None:
            injected = self.fault_plan.answer(request.method.value, key, request.url.path)
            if injected is not None:
                return injected
        try:
            fault = self.faults.get((request.method.value, key))
            if fault:
                raise APIError(fault, "InternalError", "injected fault")
            return await self._serve(request, key)
        except APIError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)

    async def _serve(self, request: rendering.Request, key: str) -> aiohttp.web.StreamResponse:
        method, ns, name, sub = request.method.value, request.namespace, request.name, request.subresource
        if not self._namespaced(key):
            ns = None
        body: Any = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                raise APIError(400, "BadRequest", "the body is not JSON (YAML bodies are not supported)") from None
        if key in REVIEWS:
            if method != "POST":
                raise APIError(405, "MethodNotAllowed", "reviews are create-only")
            return aiohttp.web.json_response(self.review(key, body or {}), status=201)
        if name is None:
            if method == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(request, key, ns)
            if method == "GET":
                return aiohttp.web.json_response(self._list(request, key, ns))
            if method == "POST":
                if request.params.get("dryRun"):
                    return aiohttp.web.json_response(body, status=201)
                return aiohttp.web.json_response(self.create(key, ns, body), status=201)
            raise APIError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        if sub not in (None, "status"):
            raise APIError(404, "NotFound", f"subresource {sub} is not served")
        if method == "GET":
            return aiohttp.web.json_response(copy.deepcopy(self._existing(key, ns, name)))
        if method == "PUT":
            return aiohttp.web.json_response(self.replace(key, ns, name, body or {}, subresource=sub))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            patch_type = {
                "application/json-patch+json": "json",
                "application/merge-patch+json": "merge",
                "application/strategic-merge-patch+json": "merge",
                "application/apply-patch+yaml": "apply",
                "application/apply-patch+json": "apply",
            }.get(ctype)
            if patch_type is None:
                raise APIError(415, "UnsupportedMediaType", f"the patch type {ctype!r} is not supported")
            created = patch_type == "apply" and (key, ns, name) not in self.store
            obj = self.patch(key, ns, name, body, patch_type, subresource=sub,
                             field_manager=request.params.get("fieldManager"))
            return aiohttp.web.json_response(obj, status=201 if created else 200)
        if method == "DELETE":
            propagation = (body or {}).get("propagationPolicy") or request.params.get("propagationPolicy")
            return aiohttp.web.json_response(self.delete(key, ns, name, propagation=propagation or "Background"))
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported")

    def _selector(self, request: rendering.Request) -> Callable[[dict[str, Any]], bool]:
        labels = _parse_selector(request.params.get("labelSelector", ""))
        fields = _parse_selector(request.params.get("fieldSelector", ""))

        def match(obj: dict[str, Any]) -> bool:
            have = obj.get("metadata", {}).get("labels") or {}
            for k, op, v in labels:
                if (op == "=" and have.get(k) != v) or (op == "!=" and have.get(k) == v) or \
                        (op == "exists" and k not in have) or (op == "!exists" and k in have):
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
        match = self._selector(request)
        items = [copy.deepcopy(o) for (k, n, _), o in self.store.items()
                 if k == key and (ns is None or n == ns) and match(o)]
        kind = self._kinds.get(key, "")
        return {"apiVersion": key.rsplit("/", 1)[0], "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self._last_rv)}, "items": items}

    async def _watch(self, request: rendering.Request, key: str, ns: str | None) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        match = self._selector(request)
        watcher = Watcher(resource=key, namespace=ns, match=match)
        since = request.params.get("resourceVersion")
        backlog: list[dict[str, Any]] = []
        if since and since != "0":
            hist = self.history.get(key, collections.deque())
            oldest = hist[0][0] if hist else self._last_rv + 1
            if int(since) < oldest - 1 and len(hist) == hist.maxlen:
                gone = APIError(410, "Expired", "too old resource version")
                backlog.append({"type": "ERROR", "object": gone.status()})
            else:
                for rv, event_type, obj in hist:
                    if rv > int(since) and (ns is None or obj["metadata"].get("namespace") == ns) and match(obj):
                        backlog.append({"type": event_type, "object": obj})
        else:
            backlog = [{"type": "ADDED", "object": copy.deepcopy(o)} for (k, n, _), o in self.store.items()
                       if k == key and (ns is None or n == ns) and match(o)]
        self.watchers.append(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw)
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            if backlog and backlog[0]["type"] == "ERROR":
                return response
            timeout = float(request.params.get("timeoutSeconds") or 3600)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if event is None:  # dropped by a fault
                    break
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watchers.remove(watcher)
        return response


_NAMESPACES_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status))?/?")


def _parse_selector(text: str) -> list[tuple[str, str, str]]:
    out = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
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
