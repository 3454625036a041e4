"""The kopf handlers: thin entry points that hand every change to the ``Reconciler``.

- InferenceEndpoints: create, update and resume reconcile; delete forgets (the objects
  go with their owner through ownerReferences).
- Deployments, Services and ConfigMaps the operator manages: a watch (not a poll) keeps
  ``Ready`` in step with the Deployment's availability and puts back what drifted.
  kopf watches them with a server-side label selector: unrelated objects never arrive.
- The reconciler's own watches (``watching``) follow the InferenceEndpoints and the
  Secrets' metadata (a missing Secret recovers; a rotated one rolls the pods).
- start-up reads ``OperatorSettings``, login shares kopf's credentials with the client
  and starts those watches, a probe reports liveness.
- The API server's refusals are retried soon (after its ``Retry-After`` for a 429),
  not after the handlers' ten-second back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable

import kopf

from . import metrics, watching
from .builders import MANAGER
from .kube import KubeError, OperatorClient
from .reconciler import Reconciler
from kubeinfer.config import OperatorSettings
from kubeinfer.resource import ANNOTATION_PREFIX, GROUP, LABEL_MANAGED_BY, PLURAL, VERSION

OWNED = {LABEL_MANAGED_BY: MANAGER}
OWNED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"
OWNED_RESOURCES = [("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "configmaps")]


def _runtime(memo: kopf.Memo) -> Reconciler:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return reconciler


def _login(settings: kopf.OperatorSettings, logger: Any) -> kopf.ConnectionInfo | None:
    return (kopf.login_with_service_account(settings=settings, logger=logger)
            or kopf.login_with_kubeconfig(settings=settings, logger=logger))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
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
    if metrics.serve_metrics(operator_settings.metrics_port):
        logger.info("Serving Prometheus metrics on :%d/metrics", operator_settings.metrics_port)


@kopf.on.login()
async def login(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
                **_: Any) -> kopf.ConnectionInfo | None:
    info = _login(settings, logger)
    if info is None:
        return None
    previous = getattr(memo, "reconciler", None)
    if previous is not None:
        await previous.client.reconnect(info)
        return info
    client = OperatorClient(info, relogin=lambda: _login(settings, logger))
    operator_settings = getattr(memo, "operator_settings", None) or OperatorSettings.from_env()
    reconciler = memo.reconciler = Reconciler(settings=operator_settings, client=client)
    namespaces = list(getattr(memo, "namespaces", None) or operator_settings.watch_namespaces)
    memo.watches = watching.informers(reconciler, namespaces)
    memo.watching = asyncio.create_task(watching.watch(memo.watches), name="kubeinfer watches")
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
        await reconciler.client.close()


@kopf.on.probe(id="endpoints_ready")
def endpoints_ready(memo: kopf.Memo, **_: Any) -> int:
    reconciler = getattr(memo, "reconciler", None)
    return len(reconciler.ready) if reconciler else 0


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
        await _retrying(_runtime(memo).reconcile(dict(body), trigger="resume"))


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=10)
async def create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _retrying(_runtime(memo).reconcile(dict(body), trigger="create"))


@kopf.on.update(GROUP, VERSION, PLURAL, backoff=10)
async def update(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _retrying(_runtime(memo).reconcile(dict(body), trigger="update"))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def delete(namespace: str, name: str, uid: str, memo: kopf.Memo, logger: logging.Logger,
                 **_: Any) -> None:
    # Deployments, Services, ConfigMaps and HPAs go with their owner (ownerReferences).
    _runtime(memo).forget((namespace, name), uid=uid)
    logger.info("InferenceEndpoint deleted; its objects are garbage-collected with it")


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
