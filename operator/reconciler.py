"""Reconciling one InferenceEndpoint: read what it references, apply what the builders
want, observe the Deployment and write the status.

The kopf handlers (``handlers``) and the watchers of owned objects and Secrets all call
``Reconciler``; it holds the operator's runtime state (settings, API client, what was
last applied) and never decides what an object looks like: ``builders`` and ``status``
do. Kubernetes Events are posted on each condition transition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import kopf

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError
from kubeinfer.resource import KIND, READY

from . import metrics
from .builders import Autoscaler, DesiredState, desired_state, endpoint_url, parse_spec, referenced_secrets, workload_name
from .kube import KubeError, OperatorClient
from kubeinfer.config import OperatorSettings
from .status import (
    Observation, apply_failed, endpoint_status, invalid_spec, observe_deployment, same_status, secret_not_found,
    transitions,
)

Key = tuple[str, str]  # (namespace, name) of an InferenceEndpoint
# How long the answer to "is KEDA installed?" is trusted: installing KEDA later is noticed.
DISCOVERY_TTL = 60.0


@dataclass
class Reconciler:
    settings: OperatorSettings
    client: OperatorClient
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("kubeinfer.operator"))
    # Deployment generation after our last apply: a different one means someone edited it.
    applied_generation: dict[Key, int] = field(default_factory=dict)
    # resourceVersions of the ConfigMap and Service after our last apply.
    applied_versions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # Endpoints known to have no HPA (resp. ScaledObject) of ours; any other might have one.
    hpa_known_absent: set[Key] = field(default_factory=set)
    scaled_object_known_absent: set[Key] = field(default_factory=set)
    # Whether KEDA's ScaledObject CRD is installed, and when that was last asked.
    keda_installed: bool | None = None
    keda_checked_at: float = 0.0
    # Secret (namespace, name) -> endpoints that reference it.
    secret_users: dict[Key, set[Key]] = field(default_factory=dict)
    ready: set[Key] = field(default_factory=set)
    # The endpoints as last seen on kopf's watch, and the status this process last wrote:
    # reacting to an owned object's change then needs no extra read.
    endpoints: dict[Key, dict[str, Any]] = field(default_factory=dict)
    written_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)

    def lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def seen(self, event_type: str, body: Mapping[str, Any]) -> None:
        """Keep the cache of endpoints in step with kopf's watch of them."""
        meta = body.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta.get("name", ""))
        if event_type == "DELETED":
            self.forget(key)
        else:
            self.endpoints[key] = dict(body)

    def forget(self, key: Key) -> None:
        self.endpoints.pop(key, None)
        self.written_status.pop(key, None)
        self._locks.pop(key, None)
        self.applied_generation.pop(key, None)
        self.hpa_known_absent.discard(key)
        self.scaled_object_known_absent.discard(key)
        self.ready.discard(key)
        metrics.READY_ENDPOINTS.set(len(self.ready))
        for users in self.secret_users.values():
            users.discard(key)

    # ---- the reconcile loop body ------------------------------------------------------------
    async def reconcile(self, cr: Mapping[str, Any], *, trigger: str) -> dict[str, Any]:
        """Bring the endpoint's objects to the desired state; returns the status written."""
        meta = cr.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta["name"])
        started = time.monotonic()
        result = "ready"
        async with self.lock(key):
            if trigger == "create":
                self.hpa_known_absent.add(key)  # a new endpoint has no autoscaler yet
                self.scaled_object_known_absent.add(key)
            try:
                observation = await self._converge(cr, key)
                if not observation.ready:
                    result = observation.reason
            except KubeError as exc:
                metrics.ERRORS.inc()
                result = "error"
                await self.write_status(cr, apply_failed(f"the API server refused a change: {exc.message}"))
                raise
            finally:
                metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
                metrics.DURATION.observe(time.monotonic() - started)
            return await self.write_status(cr, observation)

    async def _converge(self, cr: Mapping[str, Any], key: Key) -> Observation:
        try:
            config = parse_spec(cr)
        except ElasticsearchError as exc:
            return invalid_spec(exc.reason)
        namespace = key[0]
        self._remember_secret_users(key, [(namespace, s) for s in referenced_secrets(config)])
        versions: dict[str, str] = {}
        missing: dict[str, list[str]] = {}
        for secret_name, keys in referenced_secrets(config).items():
            secret = await self.client.get("Secret", namespace, secret_name)
            present = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
            if secret is None or not set(keys) <= present:
                missing[secret_name] = sorted(set(keys) - present)
            else:
                versions[secret_name] = secret["metadata"]["resourceVersion"]
        if missing:
            return secret_not_found(missing)
        state = desired_state(cr, self.settings, secret_versions=versions, autoscaler=await self.autoscaler())
        deployment = await self._apply(state, key)
        url = endpoint_url(key[1], namespace, state.config, self.settings.cluster_domain)
        return with_vectors(observe_deployment(deployment, url=url), state.config)

    async def _apply(self, state: DesiredState, key: Key) -> dict[str, Any]:
        namespace = key[0]
        name = workload_name(key[1])
        for obj in (state.configmap, state.service):
            applied = await self.client.apply(obj)
            self.applied_versions[(obj["kind"], namespace, name)] = applied["metadata"]["resourceVersion"]
        deployment = await self.client.apply(state.deployment)
        self.applied_generation[key] = deployment["metadata"].get("generation", 0)
        if state.hpa is not None:
            await self.client.apply(state.hpa)
            self.hpa_known_absent.discard(key)
        elif key not in self.hpa_known_absent:
            await self.client.delete("HorizontalPodAutoscaler", namespace, name)
            self.hpa_known_absent.add(key)
        if state.scaled_object is not None:
            await self.client.apply(state.scaled_object)
            self.scaled_object_known_absent.discard(key)
        elif key not in self.scaled_object_known_absent:
            if self.keda_installed:  # without KEDA there is no ScaledObject to remove
                await self.client.delete("ScaledObject", namespace, name)
            self.scaled_object_known_absent.add(key)
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

    def _remember_secret_users(self, key: Key, secrets: list[Key]) -> None:
        for users in self.secret_users.values():
            users.discard(key)
        for secret in secrets:
            self.secret_users.setdefault(secret, set()).add(key)

    # ---- status --------------------------------------------------------------------------
    async def write_status(self, cr: Mapping[str, Any], observation: Observation) -> dict[str, Any]:
        meta = cr.get("metadata") or {}
        key: Key = (meta.get("namespace") or "default", meta["name"])
        previous = self.written_status.get(key) or cr.get("status") or {}
        status = endpoint_status(previous, observation, meta.get("generation"))
        if observation.ready:
            self.ready.add(key)
        else:
            self.ready.discard(key)
        metrics.READY_ENDPOINTS.set(len(self.ready))
        if same_status(previous, status):
            return status
        await self.client.patch_status(KIND, key[0], key[1], status)
        self.written_status[key] = status
        for cond in transitions(previous, status):
            kind = "Normal" if cond["status"] == "True" or cond["type"] != READY else "Warning"
            kopf.event(dict(cr), type=kind, reason=cond["reason"], message=f"{cond['type']}={cond['status']}: "
                                                                           f"{cond['message']}")
        return status

    # ---- reacting to owned objects and Secrets -------------------------------------------------
    async def fetch(self, key: Key) -> dict[str, Any] | None:
        cached = self.endpoints.get(key)
        if cached is not None:
            return cached
        return await self.client.get(KIND, *key)

    async def deployment_changed(self, event_type: str, deployment: Mapping[str, Any]) -> None:
        key = owner_key(deployment)
        if key is None:
            return
        generation = (deployment.get("metadata") or {}).get("generation")
        # Under the endpoint's lock: an apply in flight has recorded its generation by then.
        async with self.lock(key):
            cr = await self.fetch(key)
            if cr is None or (cr.get("metadata") or {}).get("deletionTimestamp"):
                return
            drifted = event_type == "DELETED" or (
                key in self.applied_generation and generation != self.applied_generation[key]
            )
            if not drifted:
                if key not in self.applied_generation:
                    return  # not applied by this process yet: the resume handler reconciles it
                try:
                    config = parse_spec(cr)
                except ElasticsearchError:
                    return
                url = endpoint_url(key[1], key[0], config, self.settings.cluster_domain)
                await self.write_status(cr, with_vectors(observe_deployment(deployment, url=url), config))
                return
        self.logger.info("Deployment of %s/%s was %s: putting it back", *key,
                         "deleted" if event_type == "DELETED" else "changed")
        await self.reconcile(cr, trigger="drift")

    async def owned_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """A ConfigMap or Service of an endpoint changed or vanished: put it back if it drifted."""
        key = owner_key(obj)
        if key is None:
            return
        meta = obj.get("metadata") or {}
        async with self.lock(key):  # an apply in flight has recorded its resourceVersion by then
            known = self.applied_versions.get((obj.get("kind", ""), key[0], meta.get("name", "")))
            if event_type != "DELETED" and (known is None or known == meta.get("resourceVersion")):
                return
            cr = await self.fetch(key)
        if cr is not None and not (cr.get("metadata") or {}).get("deletionTimestamp"):
            self.logger.info("%s of %s/%s drifted: putting it back", obj.get("kind"), *key)
            await self.reconcile(cr, trigger="drift")

    async def secret_changed(self, namespace: str, name: str) -> None:
        for key in sorted(self.secret_users.get((namespace, name), ())):
            cr = await self.fetch(key)
            if cr is not None:
                await self.reconcile(cr, trigger="secret")


def with_vectors(observation: Observation, config: InferenceEndpointConfig) -> Observation:
    """The observation with the vectors' dimensions and similarity the settings declare."""
    settings = config.service_settings
    similarity = getattr(settings, "similarity", None)
    return dataclasses.replace(
        observation,
        dimensions=getattr(settings, "dimensions", None),
        similarity=getattr(similarity, "value", similarity),
    )


def owner_key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return (meta.get("namespace") or "default", ref["name"])
    return None
