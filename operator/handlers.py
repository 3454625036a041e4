"""The kopf handlers: thin entry points that hand every change to the ``Reconciler``.

- InferenceEndpoints: kopf's watch is the only one. Its indexes hold what the operator
  knows of them: each endpoint as last seen (with the ``Applied`` record kept in its
  memo), the Secrets each references, and which are Ready (the probe and the metric).
  Create, update and resume reconcile; on delete kopf forgets them (the objects go with
  their owner through ownerReferences).
- Members of a shared model server (a pool, or another endpoint's deployment): one loop,
  started at login, goes over kopf's index and asks each member's server whether its own
  model is loaded (``Reconciler.follow_models``): its ``Ready`` says so, not the pods'.
- Deployments, Services and ConfigMaps the operator manages: a watch (not a poll) keeps
  ``Ready`` in step with the Deployment's availability and puts back what drifted.
  kopf watches them with a server-side label selector: unrelated objects never arrive.
- Secrets: watched by their metadata alone (a missing Secret recovers; a rotated one
  rolls the pods), which kopf cannot ask for: its watches read whole objects, and every
  Secret's data would reach this process. So that one watch is the core client's
  ``Informer``, started at login, one per watched namespace.
- The region policy's ConfigMap: one watch of the core client's ``Informer`` (kopf's
  watch of ConfigMaps sees only the operator's own), started at login; each change goes
  to the ``Reconciler``, which keeps the policy and reconciles the endpoints.
- start-up reads ``OperatorSettings``, login shares kopf's credentials with the client,
  a probe reports liveness.
- The API server's refusals are retried soon (after its ``Retry-After`` for a 429),
  not after the handlers' ten-second back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable

import kopf

from . import metrics
from .builders import MANAGER, parse_spec, referenced_secrets
from .kube import KubeError, OperatorClient
from .reconciler import Applied, Key, Reconciler, Seen
from kubeinfer.config import OperatorSettings
from kubeinfer.errors import ElasticsearchError
from kubeinfer.kube import Informer, path_of
from kubeinfer.region_policy_store import (
    CONFIGMAP_NAME as REGION_POLICY_CONFIGMAP, SELECTOR as REGION_POLICY_SELECTOR, InvalidRegionPolicy, document_of,
)
from kubeinfer.resource import (
    ANNOTATION_PREFIX, GROUP, LABEL_MANAGED_BY, PLURAL, VERSION, ConditionStatus, ready_condition,
)

OWNED = {LABEL_MANAGED_BY: MANAGER}
OWNED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"
OWNED_RESOURCES = [("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "configmaps")]


def _runtime(memo: kopf.Memo) -> Reconciler:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return reconciler


def _applied(memo: kopf.Memo) -> Applied:
    """What this process applied for the endpoint, kept in kopf's memo of it."""
    applied = memo.get("applied")
    if applied is None:
        applied = memo["applied"] = Applied()
    return applied


def _login(settings: kopf.OperatorSettings, logger: Any) -> kopf.ConnectionInfo | None:
    return (kopf.login_with_service_account(settings=settings, logger=logger)
            or kopf.login_with_kubeconfig(settings=settings, logger=logger))


# ---- what is known of the endpoints: kopf's indexes -------------------------------------------
@kopf.index(GROUP, VERSION, PLURAL)
def endpoints(namespace: str, name: str, uid: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> dict[Key, Seen]:
    """(namespace, name) -> the endpoint as last seen."""
    return {(namespace, name): Seen(uid=uid, body=dict(body), applied=_applied(memo))}


@kopf.index(GROUP, VERSION, PLURAL)
def secret_users(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Key]:
    """A Secret (namespace, name) -> the endpoints that reference it."""
    try:
        secrets = referenced_secrets(parse_spec(dict(body)))
    except ElasticsearchError:
        return {}
    return {(namespace, secret): (namespace, name) for secret in secrets}


@kopf.index(GROUP, VERSION, PLURAL)
def ready_endpoints(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[bool, Key]:
    """True -> the endpoints whose Ready condition is True."""
    ready = (ready_condition(body) or {}).get("status") == ConditionStatus.TRUE.value
    return {True: (namespace, name)} if ready else {}


def ready_count(ready: kopf.Index) -> int:
    # Once per name: one deleted and created again while the watch was away is there twice.
    return len(set(ready.get(True, ())))


# ---- the operator's life ----------------------------------------------------------------------
@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
                    ready_endpoints: kopf.Index, **_: Any) -> None:
    operator_settings = OperatorSettings.from_env()
    memo.operator_settings = operator_settings
    logging.getLogger().setLevel(operator_settings.log_level)
    # Progress and the last handled spec go to annotations: status belongs to the CRD's schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Our own Events tell the transitions; kopf's per-handler chatter stays in the log.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf's label filters on the handlers run in this process; these run on the API server.
    for resource in OWNED_RESOURCES:
        settings.watching.label_selectors[resource] = OWNED_SELECTOR
    metrics.READY_ENDPOINTS.set_function(lambda: ready_count(ready_endpoints))
    if metrics.serve_metrics(operator_settings.metrics_port):
        logger.info("Serving Prometheus metrics on :%d/metrics", operator_settings.metrics_port)


@kopf.on.login()
async def login(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
                endpoints: kopf.Index, secret_users: kopf.Index, **_: Any) -> kopf.ConnectionInfo | None:
    info = _login(settings, logger)
    if info is None:
        return None
    previous = getattr(memo, "reconciler", None)
    if previous is not None:
        await previous.client.reconnect(info)
        return info
    client = OperatorClient(info, relogin=lambda: _login(settings, logger))
    operator_settings = getattr(memo, "operator_settings", None) or OperatorSettings.from_env()
    reconciler = memo.reconciler = Reconciler(settings=operator_settings, client=client,
                                             endpoints=endpoints, secret_users=secret_users)
    namespaces = list(getattr(memo, "namespaces", None) or operator_settings.watch_namespaces)
    policy_namespace = operator_settings.region_policy_namespace or info.default_namespace or "default"
    reconciler.region_policy_read = asyncio.Event()
    watches = [*secret_watches(reconciler, namespaces), region_policy_watch(reconciler, policy_namespace, logger)]
    memo.watching = asyncio.gather(*(watch.run() for watch in watches), reconciler.follow_models())
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "watching", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None:
        await reconciler.close()


@kopf.on.probe(id="endpoints_ready")
def endpoints_ready(ready_endpoints: kopf.Index, **_: Any) -> int:
    return ready_count(ready_endpoints)


def secret_watches(reconciler: Reconciler, namespaces: list[str]) -> list[Informer]:
    """Secrets by their metadata, in each watched namespace (everywhere without any)."""
    found: list[Informer] = []
    for namespace in namespaces or [None]:
        async def changed(event_type: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            version = None if event_type == "DELETED" else meta.get("resourceVersion")
            await reconciler.secret_changed(meta.get("namespace") or "default", meta.get("name", ""), version)

        async def listed(items: list[dict[str, Any]], namespace: str | None = namespace) -> None:
            present: set[Key] = set()
            for obj in items:
                meta = obj.get("metadata") or {}
                present.add((meta.get("namespace") or "default", meta.get("name", "")))
                await changed("ADDED", obj)
            # Those deleted while the watch was away.
            for secret in list(reconciler.secret_users):
                if secret not in present and (namespace is None or secret[0] == namespace):
                    await reconciler.secret_changed(*secret, None)

        found.append(Informer(reconciler.client.api, path_of("v1", "secrets", namespace), changed, listed,
                              metadata_only=True, keep=secret_identity))
    return found


def region_policy_watch(reconciler: Reconciler, namespace: str, logger: Any) -> Informer:
    """The region policy's ConfigMap in ``namespace``, by its label."""
    async def seen(obj: dict[str, Any] | None) -> None:
        try:
            document = document_of(obj) if obj is not None else None
        except InvalidRegionPolicy as exc:
            logger.error("the region policy in ConfigMap %s/%s is invalid and is ignored: %s", namespace,
                         (obj.get("metadata") or {}).get("name"), exc)
            document = None
        await reconciler.region_policy_changed(document.region_policy if document is not None else None)

    async def changed(event_type: str, obj: dict[str, Any]) -> None:
        if is_region_policy(obj):
            await seen(None if event_type == "DELETED" else obj)

    async def listed(items: list[dict[str, Any]]) -> None:
        found = [obj for obj in items if is_region_policy(obj)]
        await seen(found[0] if found else None)

    return Informer(reconciler.client.api, path_of("v1", "configmaps", namespace), changed, listed,
                    label_selector=REGION_POLICY_SELECTOR)


def is_region_policy(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("name") == REGION_POLICY_CONFIGMAP


def secret_identity(obj: dict[str, Any]) -> dict[str, Any]:
    """What a listed Secret's metadata is needed for: which one it is, and its version."""
    meta = obj.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("namespace", "name", "resourceVersion") if k in meta}}


async def _retrying(call: Awaitable[Any]) -> None:
    """The API server's refusals come back soon: conflicts, throttling and its own
    errors pass; a 429's ``Retry-After`` is honoured."""
    try:
        await call
    except KubeError as exc:
        delay = exc.retry_after if exc.retry_after is not None else (
            1.0 if exc.status in (409, 429) or exc.status >= 500 else 10.0)
        raise kopf.TemporaryError(f"the API server refused a change: {exc}", delay=delay) from None


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=10)
async def resume(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if not body.metadata.get("deletionTimestamp"):
        await _retrying(_runtime(memo).reconcile(dict(body), _applied(memo), trigger="resume"))


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=10)
async def create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _retrying(_runtime(memo).reconcile(dict(body), _applied(memo), trigger="create"))


@kopf.on.update(GROUP, VERSION, PLURAL, backoff=10)
async def update(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _retrying(_runtime(memo).reconcile(dict(body), _applied(memo), trigger="update"))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def delete(logger: logging.Logger, **_: Any) -> None:
    # Deployments, Services, ConfigMaps and HPAs go with their owner (ownerReferences);
    # kopf drops the endpoint's memo and index entries.
    logger.info("InferenceEndpoint deleted; its objects are garbage-collected with it")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def endpoint_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # A model server the endpoint shared stays with its other owners, who reconcile it
    # without the endpoint (deleted at once, without a finalizer, it has no delete handler).
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None and event["type"] == "DELETED":
        meta = event["object"].get("metadata") or {}
        await reconciler.member_gone(meta.get("namespace") or "default", meta.get("name", ""), meta.get("uid"))


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None and event["type"] is not None:
        await reconciler.deployment_changed(event["type"], event["object"])


@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("", "v1", "configmaps", labels=OWNED)
async def owned_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None and event["type"] is not None:
        await reconciler.owned_changed(event["type"], event["object"])
