"""Reconciling one InferenceEndpoint: read what it references, apply what the builders
want, observe the Deployment and write the status.

The kopf handlers (``handlers``) call ``Reconciler``. What is known of the endpoints is
kopf's: its indexes (each endpoint as last seen, the Secrets each references) are read
here, never written; what this process applied and wrote for an endpoint is an
``Applied`` kept in kopf's memo of that object (a CR deleted and created again has a new
uid, hence a new memo), written here alone. This module never decides what an object
looks like: ``builders`` and ``status`` do. Kubernetes Events are posted on each
condition transition. A member of a shared model server is Ready once the server reports
its own model loaded (``follow_models`` asks; ``model_reports`` speaks the HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Collection, Mapping

import httpx

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.deployment_policy import PolicyViolation
from kubeinfer.errors import ElasticsearchError
from kubeinfer.region_policy import RegionPolicy, endpoint_reach, region_refusal
from kubeinfer.resource import KIND, READY, SCALED_TO_ZERO

from . import metrics
from .builders import (
    Autoscaler, DesiredState, check_policy, desired_state, endpoint_url, parse_spec, referenced_secrets, workload_name,
)
from .kube import KubeError, OperatorClient
from .model_reports import model_report, model_server_url
from .pools import (
    Refusal, ServingGroup, deployment_id, desired_group, endpoint_metadata, inference_id, pool_name, serving_groups,
)
from .routes import gateway_objects
from kubeinfer.config import OperatorSettings
from kubeinfer.resource import LABEL_ALLOW_CUSTOM_URL
from .pools import LABEL_POOL
from .status import (
    ModelReport, Observation, apply_failed, endpoint_status, invalid_spec, observe_deployment, observe_model,
    policy_violation, region_not_allowed, same_status, secret_not_allowed, secret_not_found, transitions,
)

Key = tuple[str, str]  # (namespace, name) of an InferenceEndpoint, or of a Secret
# How long the answer to "is KEDA installed?" is trusted: installing KEDA later is noticed.
DISCOVERY_TTL = 60.0
# Reconciles in flight at once. More would only queue for one of the client's connections,
# each holding its desired objects and requests in memory meanwhile: a thousand endpoints
# created together take turns rather than all building their objects at once.
CONCURRENT_RECONCILES = 32
# How long a reconcile of an endpoint that names a region waits, at start-up, for the
# region policy to be read before going on without it.
REGION_POLICY_WAIT = 10.0
# Applied.fingerprints' entry for the serving group the endpoint was last part of ("": alone).
GROUP_MEMO = "ServingGroup"
# Owned objects whose absence is worth remembering: deleting them when absent is a wasted call.
AUTOSCALERS = frozenset({"HorizontalPodAutoscaler", "ScaledObject"})
# How long a model a shared model server reported loaded is trusted before it is asked again
# (a restarted pod loads it anew); one not loaded yet is asked at each turn of follow_models.
MODEL_RECHECK = 60.0
MODEL_CHECK_INTERVAL = 2.0
CONCURRENT_MODEL_CHECKS = 16


@dataclass(frozen=True)
class Served:
    """A member of a shared model server as its last reconcile saw it: the server, the
    generation it was built for and what its Deployment said (before its model's report)."""

    model_server: str
    generation: int | None
    observation: Observation


@dataclass(eq=False)
class Applied:
    """What this process applied and wrote for one endpoint incarnation. Empty after a
    restart: the resume handler's reconcile fills it."""

    # The status last written (None: trust the CR's own).
    status: dict[str, Any] | None = None
    # Kind -> the object as our last apply left it (a Deployment's generation, else its
    # resourceVersion): another value means someone else changed it.
    fingerprints: dict[str, str] = field(default_factory=dict)
    # Kinds of ours surely absent (an autoscaler not asked for).
    absent: set[str] = field(default_factory=set)
    # Referenced Secrets -> the resourceVersion the pods were built with (None: missing).
    secrets: dict[Key, str | None] = field(default_factory=dict)
    # Of a member of a shared model server (None: served alone, or not served): the server,
    # and what it last said of the member's model and when (time.monotonic()).
    served: Served | None = None
    model: ModelReport | None = None
    model_checked_at: float = 0.0

    def forget(self) -> None:
        """The endpoint is gone: nothing of it is known any more."""
        self.status = None
        self.fingerprints.clear()
        self.absent.clear()
        self.secrets.clear()
        self.served = None
        self.model = None


@dataclass(frozen=True, eq=False)
class Seen:
    """An InferenceEndpoint as kopf's index holds it: its latest body and what this
    process applied for it."""

    uid: str
    body: Mapping[str, Any]
    applied: Applied


def fingerprint(obj: Mapping[str, Any]) -> str:
    """What changes when someone else changes ``obj``: a Deployment's status moves on its
    own, so its generation; the resourceVersion of the rest."""
    meta = obj.get("metadata") or {}
    if obj.get("kind") == "Deployment":
        return str(meta.get("generation", 0))
    return str(meta.get("resourceVersion", ""))


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name", "")


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


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
    # kopf's indexes, read-only: (namespace, name) -> the endpoint as last seen (one per
    # incarnation), and Secret -> the endpoints that reference it.
    endpoints: Mapping[Key, Collection[Seen]] = field(default_factory=dict)
    secret_users: Mapping[Key, Collection[Key]] = field(default_factory=dict)
    lock: KeyLocks = field(default_factory=KeyLocks)
    turns: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENT_RECONCILES))
    # Whether KEDA's ScaledObject CRD is installed, and when that was last asked.
    keda_installed: bool | None = None
    keda_checked_at: float = 0.0
    # The inference region policy, as the policy's watch last saw it (written there alone),
    # and, until the watch has first listed it, an Event that is set then.
    region_policy: RegionPolicy | None = None
    region_policy_read: asyncio.Event | None = None
    _posting: set[asyncio.Task] = field(default_factory=set)
    # Uids of endpoints deleted that kopf's index may still hold for a moment: a model server
    # they shared must not list them again.
    _gone: set[str] = field(default_factory=set)
    # Asks shared model servers which models they loaded (opened on first use).
    http: httpx.AsyncClient | None = None

    # ---- the reconcile loop body ------------------------------------------------------------
    async def reconcile(self, cr: Mapping[str, Any], applied: Applied, *, trigger: str) -> dict[str, Any]:
        """Bring the endpoint's objects to the desired state; returns the status written."""
        key = key_of(cr)
        started = time.monotonic()
        result = "ready"
        async with self.turns, self.lock(key):
            if trigger == "create":
                applied.absent |= AUTOSCALERS  # a new endpoint has no autoscaler yet
            try:
                observation = await self._converge(cr, key, applied)
                if not observation.ready:
                    result = observation.reason
            except KubeError as exc:
                metrics.ERRORS.inc()
                result = "error"
                try:
                    await self.write_status(cr, applied, apply_failed(f"the API server refused a change: {exc.message}"))
                except KubeError:
                    pass  # the API server is in trouble: the retry will write it
                raise
            finally:
                metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
                metrics.DURATION.observe(time.monotonic() - started)
            return await self.write_status(cr, applied, observation)

    async def _converge(self, cr: Mapping[str, Any], key: Key, applied: Applied) -> Observation:
        served, applied.served = applied.served, None
        admitted = await self.admit(cr, key, applied)
        if isinstance(admitted, Observation):
            return admitted
        config, versions = admitted
        shared = self.serving_group(cr, key)
        await self._regroup(cr, key, applied, shared.name if isinstance(shared, ServingGroup) else "")
        if isinstance(shared, Refusal):
            return Observation(ready=False, reason=shared.reason, message=shared.message)
        if shared is not None:
            observation = await self._converge_group(cr, key, config, shared)
            return self._member_observed(cr, applied, served, observation)
        desired = desired_state(cr, self.settings, secret_versions=versions, autoscaler=await self.autoscaler(),
                                region_policy=self.region_policy)
        deployment = await self._apply(desired, key, applied)
        url = endpoint_url(key[1], key[0], desired.config, self.settings.cluster_domain)
        observation = with_vectors(observe_deployment(deployment, url=url), config)
        return dataclasses.replace(observation, model_server=desired.deployment["metadata"]["name"])

    # ---- model servers shared by several endpoints (pools, deployment_id) ------------------------
    def namespace_endpoints(self, namespace: str, cr: Mapping[str, Any] | None = None,
                            without: str | None = None) -> list[dict[str, Any]]:
        """The endpoints of ``namespace`` as kopf last saw them (``cr`` as given), those being
        deleted and ``without`` left out."""
        bodies: dict[str, dict[str, Any]] = {}
        indexed: set[str] = set()
        for (ns, name), seen in list(self.endpoints.items()):
            for one in seen:
                indexed.add(one.uid)
                if ns == namespace and name != without and not deleting(one.body) and one.uid not in self._gone:
                    bodies[name] = dict(one.body)
        self._gone &= indexed  # forget the deleted once the index has
        if cr is not None:
            bodies[key_of(cr)[1]] = dict(cr)
        return list(bodies.values())

    def serving_group(self, cr: Mapping[str, Any], key: Key) -> ServingGroup | Refusal | None:
        """The group whose model server serves ``cr``, why it cannot be served, or None
        when it is served alone."""
        groups, _, refused = serving_groups(self.namespace_endpoints(key[0], cr))
        if key[1] in refused:
            return refused[key[1]]
        return next((g for g in groups if any(key_of(m)[1] == key[1] for m in g.members)), None)

    async def _converge_group(self, cr: Mapping[str, Any], key: Key, config: InferenceEndpointConfig,
                              group: ServingGroup) -> Observation:
        state = desired_group(group, self.settings, region_policy=self.region_policy,
                              autoscaler=await self.autoscaler())
        why = state.plan.refused.get(key[1])
        if why is not None:
            return Observation(ready=False, reason=why.reason, message=why.message)
        for obj in (state.configmap, state.service, state.network_policy):
            if obj is not None:
                await self.client.apply(obj)
        routes = gateway_objects(self.settings, [(config, endpoint_metadata(cr))], state.deployment,
                                 model_server=True)
        deployment = await self.client.apply(state.deployment)
        for obj in (state.hpa, state.scaled_object, *routes):
            if obj is not None:
                await self.client.apply(obj)
        observation = with_vectors(observe_deployment(deployment, url=state.url(cr, self.settings.cluster_domain)),
                                   config)
        return dataclasses.replace(observation, model_server=group.name)

    def _member_observed(self, cr: Mapping[str, Any], applied: Applied, before: Served | None,
                         observation: Observation) -> Observation:
        """A member's observation with its model's last report: a new server, or a new
        generation of the member (its model may change), waits for a new report."""
        generation = (cr.get("metadata") or {}).get("generation")
        if observation.model_server is None:  # refused a place on it
            applied.model = None
            return observation
        if before is None or before.model_server != observation.model_server or before.generation != generation:
            applied.model = None
        applied.served = Served(observation.model_server, generation, observation)
        return observe_model(observation, applied.model)

    async def check_model(self, cr: Mapping[str, Any], applied: Applied) -> None:
        """Ask the member's shared model server whether its model is loaded, and write the
        ``Ready`` that follows: often while it is not, seldom once it is."""
        served = applied.served
        if served is None or not served.observation.ready or served.observation.reason == SCALED_TO_ZERO:
            return
        if (cr.get("metadata") or {}).get("generation") != served.generation:
            return  # a new spec: its reconcile comes first
        if applied.model is not None and applied.model.loaded and (
                time.monotonic() - applied.model_checked_at < MODEL_RECHECK):
            return
        key = key_of(cr)
        if self.http is None:
            self.http = httpx.AsyncClient(trust_env=False)
        url = model_server_url(served.model_server, key[0], self.settings.cluster_domain,
                               self.settings.model_server_url)
        report = await model_report(self.http, url, inference_id(cr))
        async with self.lock(key):
            if applied.served is not served:
                return  # reconciled meanwhile: the next turn asks again
            applied.model, applied.model_checked_at = report, time.monotonic()
            await self.write_status(cr, applied, observe_model(served.observation, report))

    async def follow_models(self, interval: float = MODEL_CHECK_INTERVAL) -> None:
        """Forever: ask about the models of the members of shared model servers that kopf's
        index holds, a few at a time, every ``interval`` seconds."""
        turns = asyncio.Semaphore(CONCURRENT_MODEL_CHECKS)

        async def one(seen: Seen) -> None:
            async with turns:
                try:
                    await self.check_model(seen.body, seen.applied)
                except KubeError as exc:  # the next turn writes it
                    self.logger.debug("could not write the model's state of %s/%s: %s", *key_of(seen.body), exc)
                except Exception:  # noqa: BLE001 - one member's trouble must not stop the others' checks
                    self.logger.exception("checking the model of %s/%s failed", *key_of(seen.body))

        while True:
            members = [seen for seens in list(self.endpoints.values()) for seen in seens
                       if seen.applied.served is not None and not deleting(seen.body)]
            await asyncio.gather(*(one(seen) for seen in members))
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self.client.close()

    async def _regroup(self, cr: Mapping[str, Any], key: Key, applied: Applied, group: str) -> None:
        """The endpoint moved between model servers (joined a pool, left one, took a
        deployment_id): the objects it served alone go, and a group it left lists it no more."""
        previous = applied.fingerprints.get(GROUP_MEMO)
        applied.fingerprints[GROUP_MEMO] = group
        own = workload_name(key[1])
        if previous is None and not group:
            return  # served alone, as far as this process knows
        if group and group != own and previous != group:
            kinds = ["Deployment", "Service", "ConfigMap", "NetworkPolicy", "HorizontalPodAutoscaler"]
            for kind in kinds + (["ScaledObject"] if self.keda_installed else []):
                await self.client.delete(kind, key[0], own)
            applied.absent |= AUTOSCALERS
            applied.fingerprints = {GROUP_MEMO: group}
        if previous and previous != group:
            await self._reconcile_group(key[0], previous, without=key[1])

    async def _reconcile_group(self, namespace: str, name: str, *, without: str) -> None:
        """Bring the group ``name`` to its members now (``without`` is not one any more);
        with none left, its objects go."""
        groups, _, _ = serving_groups(self.namespace_endpoints(namespace, without=without))
        group = next((g for g in groups if g.name == name), None)
        if group is None:
            for kind in ("Deployment", "Service", "ConfigMap", "NetworkPolicy", "HorizontalPodAutoscaler"):
                await self.client.delete(kind, namespace, name)
            return
        for obj in desired_group(group, self.settings, region_policy=self.region_policy,
                                 autoscaler=await self.autoscaler()).objects():
            await self.client.apply(obj)

    async def member_gone(self, namespace: str, name: str, uid: str | None = None) -> None:
        """An endpoint was deleted: the model server it shared lists it no more, and the
        endpoints on its deployment learn that it is gone."""
        if uid:
            self._gone.add(uid)
        for body in self.namespace_endpoints(namespace, without=name):
            if pool_name(body) or deployment_id(body) or any(
                    deployment_id(other) for other in self.namespace_endpoints(namespace, without=name)
                    if deployment_id(other) == inference_id(body)):
                for seen in list(self.endpoints.get(key_of(body), ())):
                    try:
                        await self._reconcile_live(seen, "drift", f"InferenceEndpoint {name} of its model "
                                                                  f"server was deleted")
                    except KubeError as exc:
                        self.logger.warning("reconciling %s/%s failed: %s", *key_of(body), exc)

    async def admit(self, cr: Mapping[str, Any], key: Key,
                    applied: Applied) -> tuple[InferenceEndpointConfig, dict[str, str]] | Observation:
        """Whether the endpoint may be built, checked before any object is: its spec is
        valid and the Secrets it references are there, with their keys, and may go where
        it sends them. Returns its configuration and the versions of its Secrets, or the
        refusal to report. Records which Secrets it references (their changes reconcile it)."""
        try:
            config = parse_spec(cr)
            check_policy(cr, self.settings)
        except ElasticsearchError as exc:
            applied.secrets = {}
            return invalid_spec(exc.reason)
        except PolicyViolation as exc:
            # Before any Secret is read: a spec the policy refuses reads nothing.
            applied.secrets = {}
            return policy_violation(str(exc))
        if self.region_policy_read is not None and endpoint_reach(config) is not None:
            await self._region_policy_read()
        outside = region_refusal(config, self.region_policy)
        if outside is not None:
            applied.secrets = {}
            return region_not_allowed(outside)
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
        applied.secrets = used
        if missing:
            return secret_not_found(missing)
        if not_allowed:
            return secret_not_allowed(not_allowed, custom_url or "url")
        return config, versions

    async def _apply(self, desired: DesiredState, key: Key, applied: Applied) -> dict[str, Any]:
        namespace = key[0]
        name = workload_name(key[1])
        for obj in (desired.configmap, desired.service, desired.network_policy):
            if obj is not None:
                applied.fingerprints[obj["kind"]] = fingerprint(await self.client.apply(obj))
        routes = gateway_objects(self.settings, [(desired.config, desired.configmap["metadata"])],
                                 desired.deployment, model_server=not desired.config.spec.external)
        deployment = await self.client.apply(desired.deployment)
        applied.fingerprints["Deployment"] = fingerprint(deployment)
        for route in routes:  # with a parent Gateway set: inference from it straight to the pods
            await self.client.apply(route)
        for kind, wanted in (("HorizontalPodAutoscaler", desired.hpa), ("ScaledObject", desired.scaled_object)):
            if wanted is not None:
                await self.client.apply(wanted)
                applied.absent.discard(kind)
            elif kind not in applied.absent:
                # Without KEDA there is no ScaledObject to remove.
                if kind != "ScaledObject" or self.keda_installed:
                    await self.client.delete(kind, namespace, name)
                applied.absent.add(kind)
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
    async def write_status(self, cr: Mapping[str, Any], applied: Applied, observation: Observation) -> dict[str, Any]:
        meta = cr.get("metadata") or {}
        key = key_of(cr)
        previous = applied.status or cr.get("status") or {}
        status = endpoint_status(previous, observation, meta.get("generation"))
        if same_status(previous, status):
            return status
        # The whole status, with the fields to clear left out, for this incarnation only.
        whole = {k: v for k, v in {**previous, **status}.items() if v is not None}
        written = await self.client.write_status(KIND, key[0], key[1], meta.get("uid") or "", whole)
        if written is None:  # gone, or created again under the same name meanwhile
            applied.forget()
            return status
        applied.status = status
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
    def owner(self, obj: Mapping[str, Any]) -> Seen | None:
        """The endpoint that controls ``obj``, as kopf last saw it, unless it is being deleted."""
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == KIND and ref.get("controller"):
                for seen in self.endpoints.get((meta.get("namespace") or "default", ref["name"]), ()):
                    if seen.uid == ref.get("uid") and not deleting(seen.body):
                        return seen
        return None

    async def deployment_changed(self, event_type: str, deployment: Mapping[str, Any]) -> None:
        found = self.owner(deployment)
        if found is None:
            await self._shared_deployment_changed(event_type, deployment)
            return
        key = key_of(found.body)
        # Under the endpoint's lock: an apply in flight has recorded its generation by then.
        async with self.lock(key):
            seen = self.owner(deployment)
            if seen is None:
                return
            known = seen.applied.fingerprints.get("Deployment")
            if event_type != "DELETED" and known == fingerprint(deployment):
                try:
                    config = parse_spec(seen.body)
                    check_policy(seen.body, self.settings)
                except (ElasticsearchError, PolicyViolation):
                    return  # the refusal stays the status, whatever an older Deployment does
                if region_refusal(config, self.region_policy) is not None:
                    return
                url = endpoint_url(key[1], key[0], config, self.settings.cluster_domain)
                await self.write_status(seen.body, seen.applied,
                                        with_vectors(observe_deployment(deployment, url=url), config))
                return
            if event_type != "DELETED" and known is None:
                return  # not applied by this process yet: the resume handler reconciles it
        await self._reconcile_live(seen, "drift", f"its Deployment was {_what(event_type)}")

    async def _shared_deployment_changed(self, event_type: str, deployment: Mapping[str, Any]) -> None:
        """A model server several endpoints share rolled out (or went): each member's status follows."""
        meta = deployment.get("metadata") or {}
        if LABEL_POOL not in (meta.get("labels") or {}):
            return
        namespace = meta.get("namespace") or "default"
        for ref in meta.get("ownerReferences") or []:
            for seen in list(self.endpoints.get((namespace, ref.get("name", "")), ())):
                if seen.uid == ref.get("uid") and not deleting(seen.body):
                    try:
                        await self._reconcile_live(seen, "drift", f"its model server was {_what(event_type)}")
                    except KubeError as exc:
                        self.logger.warning("reconciling %s/%s failed: %s", namespace, ref.get("name"), exc)

    async def owned_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """A ConfigMap or Service of an endpoint changed or vanished: put it back if it drifted."""
        found = self.owner(obj)
        if found is None:
            return
        async with self.lock(key_of(found.body)):  # an apply in flight has recorded its version by then
            seen = self.owner(obj)
            if seen is None:
                return
            known = seen.applied.fingerprints.get(obj.get("kind", ""))
            if event_type != "DELETED" and known in (None, fingerprint(obj)):
                return
        await self._reconcile_live(seen, "drift", f"its {obj.get('kind', 'object')} was {_what(event_type)}")

    async def secret_changed(self, namespace: str, name: str, version: str | None) -> None:
        """A Secret appeared, changed or vanished (``version`` None): reconcile the endpoints
        that reference it and were built with another version of it."""
        secret: Key = (namespace, name)
        for key in sorted(set(self.secret_users.get(secret, ()))):
            for seen in list(self.endpoints.get(key, ())):
                if seen.applied.secrets.get(secret, version) != version and not deleting(seen.body):
                    try:
                        await self._reconcile_live(seen, "secret", f"its Secret {name} changed")
                    except KubeError as exc:
                        self.logger.warning("reconciling %s/%s after its Secret changed failed: %s", *key, exc)

    async def region_policy_changed(self, policy: RegionPolicy | None) -> None:
        """The region policy changed: reconcile the endpoints it may concern, side by side
        (each takes its turn), so that those it allows no more say so and model servers
        move. Endpoints that name no region and are not placed by it are left alone."""
        if self.region_policy_read is not None:
            self.region_policy_read.set()
            self.region_policy_read = None
        if policy == self.region_policy:
            return
        self.region_policy = policy
        live = [seen for seens in list(self.endpoints.values()) for seen in seens
                if not deleting(seen.body) and self._concerned(seen.body)]

        async def one(seen: Seen) -> None:
            try:
                await self._reconcile_live(seen, "region-policy", "the region policy changed")
            except KubeError as exc:
                self.logger.warning("reconciling %s/%s after the region policy changed failed: %s",
                                    *key_of(seen.body), exc)

        await asyncio.gather(*(one(seen) for seen in live))

    async def _region_policy_read(self) -> None:
        """Wait, briefly, for the region policy's first listing: an endpoint resumed at
        start-up is not built outside a policy that has not been read yet."""
        read = self.region_policy_read
        if read is None:
            return
        try:
            await asyncio.wait_for(read.wait(), REGION_POLICY_WAIT)
        except TimeoutError:
            if self.region_policy_read is read:  # once: the others go on at once
                self.region_policy_read = None
                self.logger.warning("the region policy could not be read within %gs; going on without it "
                                    "until it is", REGION_POLICY_WAIT)

    def _concerned(self, cr: Mapping[str, Any]) -> bool:
        """Whether the region policy bears on the endpoint: its service names a region, or
        it is a model server placed by the policy."""
        try:
            config = parse_spec(cr)
        except ElasticsearchError:
            return False
        return endpoint_reach(config) is not None or (self.settings.region_node_placement
                                                      and not config.spec.external)

    async def _reconcile_live(self, seen: Seen, trigger: str, why: str) -> None:
        """Reconcile the endpoint as the API server has it now, if it is still the incarnation
        ``seen``: kopf's copy may predate a deletion (the garbage collector's own deletions
        look like drift), and one deleted while the watch was away lingers in its indexes."""
        key = key_of(seen.body)
        cr = await self.client.get(KIND, *key)
        if cr is None or (cr.get("metadata") or {}).get("uid") != seen.uid:
            seen.applied.forget()
            return
        if deleting(cr):
            return
        self.logger.info("%s/%s: %s, reconciling", *key, why)
        await self.reconcile(cr, seen.applied, trigger=trigger)


def _what(event_type: str) -> str:
    return "deleted" if event_type == "DELETED" else "changed"


def with_vectors(observation: Observation, config: InferenceEndpointConfig) -> Observation:
    """The observation with the vectors' dimensions and similarity the settings declare."""
    settings = config.service_settings
    similarity = getattr(settings, "similarity", None)
    return dataclasses.replace(
        observation,
        dimensions=getattr(settings, "dimensions", None),
        similarity=getattr(similarity, "value", similarity),
    )


def custom_url_setting(config: InferenceEndpointConfig) -> str | None:
    """The first setting of ``config`` that sends its requests (and secrets) to a URL of its
    own (the catalog says which settings do)."""
    return next(iter(config.url_settings()), None)


def may_leave_for_custom_url(metadata: Mapping[str, Any], endpoint_uid: str | None) -> bool:
    """Whether a Secret may be sent to an endpoint's own URL: its owner said so with the
    label, or the endpoint itself owns it (the gateway made it from the key it was given)."""
    if (metadata.get("labels") or {}).get(LABEL_ALLOW_CUSTOM_URL) == "true":
        return True
    return endpoint_uid is not None and any(
        ref.get("uid") == endpoint_uid for ref in metadata.get("ownerReferences") or [])
