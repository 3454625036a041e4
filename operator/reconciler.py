"""Reconciling one InferenceEndpoint: read what it references, apply what the builders
want, observe the Deployment and write the status.

The kopf handlers (``handlers``) and the watches of endpoints, owned objects and Secrets
(``watching``) all call ``Reconciler``; it holds the operator's runtime state in one
place, an ``EndpointState`` per endpoint keyed by its uid (a CR deleted and created
again starts afresh; a fresh list of the endpoints drops what vanished), and never
decides what an object looks like: ``builders`` and ``status`` do. Kubernetes Events
are posted on each condition transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError
from kubeinfer.resource import KIND, READY

from . import metrics
from .builders import Autoscaler, DesiredState, desired_state, endpoint_url, parse_spec, referenced_secrets, workload_name
from .kube import KubeError, OperatorClient
from kubeinfer.config import OperatorSettings
from kubeinfer.resource import LABEL_ALLOW_CUSTOM_URL
from .status import (
    Observation, apply_failed, endpoint_status, invalid_spec, observe_deployment, same_status, secret_not_allowed,
    secret_not_found, transitions,
)

Key = tuple[str, str]  # (namespace, name) of an InferenceEndpoint, or of a Secret
# How long the answer to "is KEDA installed?" is trusted: installing KEDA later is noticed.
DISCOVERY_TTL = 60.0
# Reconciles in flight at once. More would only queue for one of the client's connections,
# each holding its desired objects and requests in memory meanwhile: a thousand endpoints
# created together take turns rather than all building their objects at once.
CONCURRENT_RECONCILES = 32


@dataclass
class EndpointState:
    """What this process knows of one InferenceEndpoint, for one uid: a CR deleted and
    created again under the same name starts from nothing."""

    uid: str
    body: dict[str, Any]
    # The status this process last wrote (None: trust the CR's own).
    written_status: dict[str, Any] | None = None
    # Deployment generation after our last apply: a different one means someone edited it.
    applied_generation: int | None = None
    # resourceVersions of the ConfigMap and Service (by kind) after our last apply.
    applied_versions: dict[str, str] = field(default_factory=dict)
    # Whether the endpoint surely has no HPA (resp. ScaledObject) of ours (unknown after a restart).
    hpa_known_absent: bool = False
    scaled_object_known_absent: bool = False
    # Referenced Secrets -> the resourceVersion the pods were built with (None: missing).
    secrets: dict[Key, str | None] = field(default_factory=dict)
    ready: bool = False


class KeyLocks:
    """One lock per endpoint, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Key, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, key: Key) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class Reconciler:
    settings: OperatorSettings
    client: OperatorClient
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("kubeinfer.operator"))
    # The endpoints as last seen on the watch (rebuilt whenever it lists again).
    endpoints: dict[Key, EndpointState] = field(default_factory=dict)
    # Secret -> the endpoints that reference it (the reverse of ``EndpointState.secrets``).
    secret_users: dict[Key, set[Key]] = field(default_factory=dict)
    lock: KeyLocks = field(default_factory=KeyLocks)
    turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_RECONCILES))
    # Whether KEDA's ScaledObject CRD is installed, and when that was last asked.
    keda_installed: bool | None = None
    keda_checked_at: float = 0.0
    _posting: set[asyncio.Task] = field(default_factory=set)

    @property
    def ready(self) -> set[Key]:
        return {key for key, state in self.endpoints.items() if state.ready}

    def _publish_ready(self) -> None:
        metrics.READY_ENDPOINTS.set(sum(state.ready for state in self.endpoints.values()))

    def state(self, cr: Mapping[str, Any]) -> EndpointState:
        """The state of ``cr``'s incarnation (a new uid under a known name starts afresh)."""
        meta = cr.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta.get("name", ""))
        uid = meta.get("uid") or ""
        state = self.endpoints.get(key)
        if state is None or state.uid != uid:
            if state is not None:
                self._use_secrets(key, state, {})
            state = self.endpoints[key] = EndpointState(uid=uid, body=dict(cr))
        else:
            state.body = dict(cr)
        return state

    def seen(self, event_type: str, body: Mapping[str, Any]) -> None:
        """Keep the endpoints in step with the watch of them."""
        meta = body.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta.get("name", ""))
        if event_type == "DELETED":
            state = self.endpoints.get(key)
            self.forget(key, uid=meta.get("uid") or "")
        else:
            self.state(body)

    def relisted(self, items: list[Mapping[str, Any]], namespace: str | None = None) -> None:
        """A fresh list of the endpoints (in ``namespace``, or everywhere): what is not in
        it was deleted while the watch was away."""
        present = {((o.get("metadata") or {}).get("namespace") or "default", (o.get("metadata") or {}).get("name"),
                    (o.get("metadata") or {}).get("uid")) for o in items}
        for key, state in list(self.endpoints.items()):
            if (namespace is None or key[0] == namespace) and (*key, state.uid) not in present:
                self.forget(key)
        for obj in items:
            self.state(obj)

    def forget(self, key: Key, *, uid: str | None = None) -> None:
        """Drop what is known of the endpoint (of that ``uid`` only, when given)."""
        # An endpoint's lock goes by itself once released (``KeyLocks``).
        state = self.endpoints.get(key)
        if state is not None and uid is not None and state.uid != uid:
            return
        self.endpoints.pop(key, None)
        if state is not None:
            self._use_secrets(key, state, {})
        self._publish_ready()

    def _use_secrets(self, key: Key, state: EndpointState, secrets: dict[Key, str | None]) -> None:
        for secret in state.secrets.keys() - secrets.keys():
            users = self.secret_users.get(secret, set())
            users.discard(key)
            if not users:
                self.secret_users.pop(secret, None)
        for secret in secrets:
            self.secret_users.setdefault(secret, set()).add(key)
        state.secrets = secrets

    # ---- the reconcile loop body ------------------------------------------------------------
    async def reconcile(self, cr: Mapping[str, Any], *, trigger: str) -> dict[str, Any]:
        """Bring the endpoint's objects to the desired state; returns the status written."""
        meta = cr.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta["name"])
        started = time.monotonic()
        result = "ready"
        async with self.turns, self.lock(key):
            state = self.state(cr)
            if trigger == "create":
                state.hpa_known_absent = True  # a new endpoint has no autoscaler yet
                state.scaled_object_known_absent = True
            try:
                observation = await self._converge(cr, key, state)
                if not observation.ready:
                    result = observation.reason
            except KubeError as exc:
                metrics.ERRORS.inc()
                result = "error"
                try:
                    await self.write_status(cr, apply_failed(f"the API server refused a change: {exc.message}"))
                except KubeError:
                    pass  # the API server is in trouble: the retry will write it
                raise
            finally:
                metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
                metrics.DURATION.observe(time.monotonic() - started)
            return await self.write_status(cr, observation)

    async def _converge(self, cr: Mapping[str, Any], key: Key, state: EndpointState) -> Observation:
        try:
            config = parse_spec(cr)
        except ElasticsearchError as exc:
            self._use_secrets(key, state, {})
            return invalid_spec(exc.reason)
        namespace = key[0]
        versions: dict[str, str] = {}
        missing: dict[str, list[str]] = {}
        used: dict[Key, str | None] = {}
        custom_url = custom_url_setting(config)
        not_allowed: list[str] = []
        uid = (cr.get("metadata") or {}).get("uid")
        for secret_name, keys in referenced_secrets(config).items():
            secret = await self.client.get("Secret", namespace, secret_name)
            # Only the key names, the version and the consent are kept: never the data.
            present = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
            version = secret["metadata"]["resourceVersion"] if secret is not None else None
            used[(namespace, secret_name)] = version
            if secret is None or not set(keys) <= present:
                missing[secret_name] = sorted(set(keys) - present)
            else:
                versions[secret_name] = version
                if custom_url is not None and not may_leave_for_custom_url(secret["metadata"], uid):
                    not_allowed.append(secret_name)
            del secret
        self._use_secrets(key, state, used)
        if missing:
            return secret_not_found(missing)
        if not_allowed:
            return secret_not_allowed(not_allowed, custom_url or "url")
        desired = desired_state(cr, self.settings, secret_versions=versions, autoscaler=await self.autoscaler())
        deployment = await self._apply(desired, key, state)
        url = endpoint_url(key[1], namespace, desired.config, self.settings.cluster_domain)
        return with_vectors(observe_deployment(deployment, url=url), desired.config)

    async def _apply(self, desired: DesiredState, key: Key, state: EndpointState) -> dict[str, Any]:
        namespace = key[0]
        name = workload_name(key[1])
        for obj in (desired.configmap, desired.service, desired.network_policy):
            if obj is None:
                continue
            applied = await self.client.apply(obj)
            state.applied_versions[obj["kind"]] = applied["metadata"]["resourceVersion"]
        deployment = await self.client.apply(desired.deployment)
        state.applied_generation = deployment["metadata"].get("generation", 0)
        if desired.hpa is not None:
            await self.client.apply(desired.hpa)
            state.hpa_known_absent = False
        elif not state.hpa_known_absent:
            await self.client.delete("HorizontalPodAutoscaler", namespace, name)
            state.hpa_known_absent = True
        if desired.scaled_object is not None:
            await self.client.apply(desired.scaled_object)
            state.scaled_object_known_absent = False
        elif not state.scaled_object_known_absent:
            if self.keda_installed:  # without KEDA there is no ScaledObject to remove
                await self.client.delete("ScaledObject", namespace, name)
            state.scaled_object_known_absent = True
        return deployment

    async def autoscaler(self) -> Autoscaler:
        """The autoscaler adaptive allocations get: the setting's, or KEDA where its CRD is installed."""
        now = time.monotonic()
        if self.keda_installed is None or now - self.keda_checked_at > DISCOVERY_TTL:
            self.keda_installed = await self.client.serves("ScaledObject")
            self.keda_checked_at = now
        if self.settings.autoscaler != "auto":
            return self.settings.autoscaler
        return "keda" if self.keda_installed else "hpa"

    # ---- status --------------------------------------------------------------------------
    async def write_status(self, cr: Mapping[str, Any], observation: Observation) -> dict[str, Any]:
        meta = cr.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta["name"])
        state = self.state(cr)
        previous = state.written_status or cr.get("status") or {}
        status = endpoint_status(previous, observation, meta.get("generation"))
        if state.ready != observation.ready:  # counting them all on every write is quadratic
            state.ready = observation.ready
            self._publish_ready()
        if same_status(previous, status):
            return status
        # The whole status, with the fields to clear left out, for this incarnation only.
        whole = {k: v for k, v in {**previous, **status}.items() if v is not None}
        written = await self.client.write_status(KIND, key[0], key[1], state.uid, whole)
        if written is None:  # gone, or created again under the same name meanwhile
            self.forget(key, uid=state.uid)
            return status
        state.written_status = status
        for cond in transitions(previous, status):
            kind = "Normal" if cond["status"] == "True" or cond["type"] != READY else "Warning"
            self._post_event(cr, kind, cond["reason"], f"{cond['type']}={cond['status']}: {cond['message']}")
        return status

    def _post_event(self, cr: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event in the background: a lost Event must not fail a reconcile."""
        async def post() -> None:
            try:
                await self.client.post_event(cr, type_=kind, reason=reason, message=message)
            except KubeError as exc:
                self.logger.debug("could not post an Event about %s: %s", (cr.get("metadata") or {}).get("name"), exc)

        task = asyncio.get_running_loop().create_task(post())
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    # ---- reacting to owned objects and Secrets -------------------------------------------------
    def owner(self, obj: Mapping[str, Any]) -> tuple[Key, EndpointState] | None:
        """The endpoint that controls ``obj``, if it is the live incarnation we know."""
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == KIND and ref.get("controller"):
                key: Key = (meta.get("namespace") or "default", ref["name"])
                state = self.endpoints.get(key)
                if state is not None and state.uid == ref.get("uid") and \
                        not (state.body.get("metadata") or {}).get("deletionTimestamp"):
                    return key, state
        return None

    async def deployment_changed(self, event_type: str, deployment: Mapping[str, Any]) -> None:
        found = self.owner(deployment)
        if found is None:
            return
        key, _ = found
        generation = (deployment.get("metadata") or {}).get("generation")
        # Under the endpoint's lock: an apply in flight has recorded its generation by then.
        async with self.lock(key):
            found = self.owner(deployment)
            if found is None:
                return
            _, state = found
            cr = state.body
            drifted = event_type == "DELETED" or (
                state.applied_generation is not None and generation != state.applied_generation)
            if not drifted:
                if state.applied_generation is None:
                    return  # not applied by this process yet: the resume handler reconciles it
                try:
                    config = parse_spec(cr)
                except ElasticsearchError:
                    return
                url = endpoint_url(key[1], key[0], config, self.settings.cluster_domain)
                await self.write_status(cr, with_vectors(observe_deployment(deployment, url=url), config))
                return
        await self._repair(key, state, "Deployment", "deleted" if event_type == "DELETED" else "changed")

    async def _repair(self, key: Key, state: EndpointState, kind: str, what: str) -> None:
        """Put back an owned object, if its endpoint still exists: the watch's copy may
        predate a deletion (the garbage collector's own deletions look like drift)."""
        cr = await self.client.get(KIND, *key)
        if cr is None or (cr.get("metadata") or {}).get("uid") != state.uid:
            self.forget(key, uid=state.uid)
            return
        if (cr.get("metadata") or {}).get("deletionTimestamp"):
            return
        self.logger.info("%s of %s/%s was %s: putting it back", kind, *key, what)
        await self.reconcile(cr, trigger="drift")

    async def owned_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """A ConfigMap or Service of an endpoint changed or vanished: put it back if it drifted."""
        found = self.owner(obj)
        if found is None:
            return
        key, _ = found
        meta = obj.get("metadata") or {}
        async with self.lock(key):  # an apply in flight has recorded its resourceVersion by then
            found = self.owner(obj)
            if found is None:
                return
            _, state = found
            known = state.applied_versions.get(obj.get("kind", ""))
            if event_type != "DELETED" and (known is None or known == meta.get("resourceVersion")):
                return
        await self._repair(key, state, obj.get("kind", "object"), "deleted" if event_type == "DELETED" else "changed")

    async def secret_changed(self, namespace: str, name: str, version: str | None) -> None:
        """A Secret appeared, changed or vanished (``version`` None): reconcile the endpoints
        that reference it and were built with another version of it."""
        secret: Key = (namespace, name)
        for key in sorted(self.secret_users.get(secret, ())):
            state = self.endpoints.get(key)
            if state is not None and state.secrets.get(secret, version) != version:
                if not (state.body.get("metadata") or {}).get("deletionTimestamp"):
                    try:
                        await self.reconcile(state.body, trigger="secret")
                    except KubeError as exc:
                        self.logger.warning("reconciling %s/%s after its Secret changed failed: %s", *key, exc)


def with_vectors(observation: Observation, config: InferenceEndpointConfig) -> Observation:
    """The observation with the vectors' dimensions and similarity the settings declare."""
    settings = config.service_settings
    similarity = getattr(settings, "similarity", None)
    return dataclasses.replace(
        observation,
        dimensions=getattr(settings, "dimensions", None),
        similarity=getattr(similarity, "value", similarity),
    )


# Settings that send requests somewhere else than the provider's own API.
CUSTOM_URL_SETTINGS = ("url", "streaming_url", "target", "host")


def custom_url_setting(config: Any) -> str | None:
    """The first setting of ``config`` that sends its requests (and secrets) to a URL of its own."""
    for name in CUSTOM_URL_SETTINGS:
        if getattr(config.service_settings, name, None):
            return name
    return None


def may_leave_for_custom_url(metadata: Mapping[str, Any], endpoint_uid: str | None) -> bool:
    """Whether a Secret may be sent to an endpoint's own URL: its owner said so with the
    label, or the endpoint itself owns it (the gateway made it from the key it was given)."""
    if (metadata.get("labels") or {}).get(LABEL_ALLOW_CUSTOM_URL) == "true":
        return True
    return endpoint_uid is not None and any(
        ref.get("uid") == endpoint_uid for ref in metadata.get("ownerReferences") or [])
