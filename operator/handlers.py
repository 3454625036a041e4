"""The kopf handlers: thin entry points that hand every change to the ``Reconciler``.

- InferenceEndpoints: create, update and resume reconcile; delete forgets (the objects
  go with their owner through ownerReferences).
- Deployments, Services and ConfigMaps the operator manages: a watch (not a poll) keeps
  ``Ready`` in step with the Deployment's availability and puts back what drifted.
- Secrets: when one that an endpoint waits for or uses appears or changes, the endpoint
  is reconciled again (a missing Secret recovers; a rotated one rolls the pods).
- start-up reads ``OperatorSettings``, login shares kopf's credentials with the client,
  a probe reports liveness.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import metrics
from .builders import MANAGER
from .kube import OperatorClient
from .reconciler import Reconciler
from kubeinfer.config import OperatorSettings
from kubeinfer.resource import ANNOTATION_PREFIX, GROUP, LABEL_MANAGED_BY, PLURAL, VERSION

OWNED = {LABEL_MANAGED_BY: MANAGER}


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
        await previous.client.close()
    client = OperatorClient(info, relogin=lambda: _login(settings, logger))
    operator_settings = getattr(memo, "operator_settings", None) or OperatorSettings.from_env()
    if previous is None:
        memo.reconciler = Reconciler(settings=operator_settings, client=client)
    else:
        previous.client = client
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None:
        await reconciler.client.close()


@kopf.on.probe(id="endpoints_ready")
def endpoints_ready(memo: kopf.Memo, **_: Any) -> int:
    reconciler = getattr(memo, "reconciler", None)
    return len(reconciler.ready) if reconciler else 0


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=10)
async def resume(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if not body.metadata.get("deletionTimestamp"):
        await _runtime(memo).reconcile(dict(body), trigger="resume")


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=10)
async def create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).reconcile(dict(body), trigger="create")


@kopf.on.update(GROUP, VERSION, PLURAL, backoff=10)
async def update(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).reconcile(dict(body), trigger="update")


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def delete(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    # Deployments, Services, ConfigMaps and HPAs go with their owner (ownerReferences).
    _runtime(memo).forget((namespace, name))
    logger.info("InferenceEndpoint deleted; its objects are garbage-collected with it")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def endpoint_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    if reconciler is not None and event.get("object"):
        reconciler.seen(event["type"] or "ADDED", event["object"])


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


@kopf.on.event("", "v1", "secrets")
async def secret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    reconciler = getattr(memo, "reconciler", None)
    meta = (event.get("object") or {}).get("metadata") or {}
    if reconciler is not None and event["type"] is not None and meta.get("name"):
        await reconciler.secret_changed(meta.get("namespace") or "default", meta["name"])
