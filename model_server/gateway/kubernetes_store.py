"""Endpoints as InferenceEndpoint custom resources: the store behind ``kubeinfer gateway``.

Reads come from an ``EndpointIndex`` fed by one watch of the namespace's resources: a
lookup, a list and a wait (for Ready after a PUT, for replicas while an endpoint wakes)
never call the API server. Create makes a CR (and, for secrets given in plain text, a
Secret owned by the CR that the CR references with ``secretKeyRef``), then waits on the
index until the operator reports the endpoint Ready. Update swaps new secrets in through a new Secret, so that a refused write
leaves the old endpoint whole. Get and list read CRs; delete deletes the CR (Kubernetes' garbage
collector deletes its Secret). The gateway writes Secrets but never reads one.
Inference is relayed to the URL the operator put in the CR's status (``forwarding``); an
endpoint at zero replicas is woken first (``waking``). What the operator builds from a CR is not this
module's business beyond the Deployment's name and annotations the resource defines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from typing import Any

from ..api import metrics
from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig, SecretKeyRef, from_manifest
from kubeinfer.catalog.endpoint import is_inference_id
from kubeinfer.errors import ElasticsearchError, not_found, status_exception, validation_exception
from kubeinfer.config import GatewaySettings
from .forwarding import ForwardingBackend
from kubeinfer.endpoint_index import EndpointIndex
from kubeinfer.kube import KubeClient, KubeError
from kubeinfer.resource import (
    API_VERSION, LABEL_ALLOW_CUSTOM_URL, LABEL_MANAGED_BY, PLURAL, is_ready, owner_reference, ready_condition, refusal, workload_name,
)
from .waking import WakeUps, WakingBackend, at_zero, scaled_by_keda
from .store import already_exists, with_model_facts

log = logging.getLogger("kubeinfer.gateway")

MANAGED_BY = {LABEL_MANAGED_BY: "kubeinfer-gateway"}
# How long a write of this replica may take to come back through the watch before a read
# that follows it goes ahead anyway.
OWN_WRITE_SEEN_WITHIN = 5.0


def resource_name(inference_id: str) -> str:
    """The CR's name: the inference id, with ``_`` (not allowed in names) as ``-``; a
    preconfigured endpoint's (``.elser-2-elasticsearch``) gets a prefix for its dot."""
    name = inference_id.replace("_", "-")
    return f"preconfigured-{name[1:]}" if name.startswith(".") else name


def secret_name(inference_id: str) -> str:
    return f"{resource_name(inference_id)}-secrets"


def served_config(obj: dict[str, Any]) -> InferenceEndpointConfig:
    """The resource's endpoint, with the model facts the operator reported in its status."""
    return with_model_facts(from_manifest(obj), obj.get("status"))


def owned_secret(config: InferenceEndpointConfig, cr: dict[str, Any] | None, namespace: str, *,
                 name: str | None = None) -> dict[str, Any]:
    """The Secret holding ``config``'s plain secrets, owned by (deleted with) the CR once
    there is one."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name or secret_name(config.inference_id),
            "namespace": namespace,
            # The creator gave the key with the endpoint: it may go to the endpoint's own url.
            "labels": {**MANAGED_BY, LABEL_ALLOW_CUSTOM_URL: "true"},
            "ownerReferences": [] if cr is None else [owner_reference(cr["metadata"]["name"], cr["metadata"]["uid"])],
        },
        "data": {
            name: base64.b64encode(value.get_secret_value().encode()).decode()
            for name, value in config.plain_secrets().items()
        },
    }


def rotated_secret_name(inference_id: str) -> str:
    """A new name for the Secret of an endpoint whose secrets change (swapped in by ``update``)."""
    return f"{secret_name(inference_id)}-{secrets.token_hex(3)}"


def is_gateway_secret(name: str, inference_id: str) -> bool:
    """Whether ``name`` is a name this gateway gives the Secrets of ``inference_id``."""
    base = secret_name(inference_id)
    return name == base or (name.startswith(f"{base}-") and len(name) == len(base) + 7)


def with_secret_references(config: InferenceEndpointConfig, name: str | None = None) -> InferenceEndpointConfig:
    """``config`` with each plain secret replaced by a reference to the owned Secret
    (``name``, or the endpoint's first Secret's)."""
    name = name or secret_name(config.inference_id)
    refs = {
        key: SecretKeyRef.model_validate({"secretKeyRef": {"name": name, "key": key}})
        for key in config.plain_secrets()
    }
    return config.with_secret_refs(refs) if refs else config


# A left-over Secret collected between our create and our take-over, this often in a row,
# means something else keeps deleting it.
_SECRET_ATTEMPTS = 5


class KubernetesEndpointStore:
    """InferenceEndpoints in one namespace of the cluster ``api`` talks to."""

    def __init__(self, api: KubeClient, namespace: str, *, poll_interval: float = 0.5,
                 settings: GatewaySettings | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.index: EndpointIndex[InferenceEndpointConfig] = EndpointIndex(
            api, namespace, parse=served_config, forgotten=metrics.forget_endpoint)
        settings = settings if settings is not None else GatewaySettings.from_env()
        # Requests held for endpoints waking from zero: one wake-up per endpoint, bounded.
        self.wake_ups = WakeUps(namespace, poll_interval=poll_interval,
                                per_endpoint=settings.held_requests_per_endpoint, max_hold=settings.max_hold)

    async def start(self) -> None:
        await self.index.start()

    @property
    def ready(self) -> bool:
        """Ready once the endpoints of the namespace are listed: before, every answer would be
        a guess."""
        return self.index.informer.listed.is_set()

    async def close(self) -> None:
        await self.wake_ups.close()
        await self.index.stop()
        await self.api.close()

    # ---- paths ---------------------------------------------------------------------
    @property
    def _collection(self) -> str:
        return f"/apis/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}"

    def _cr_path(self, name: str) -> str:
        return f"{self._collection}/{name}"

    def _secret_path(self, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{self.namespace}/secrets"
        return f"{base}/{name}" if name else base

    # ---- reading -------------------------------------------------------------------
    async def _synced(self) -> None:
        try:
            await asyncio.wait_for(self.index.synced(), self.index.sync_timeout)
        except TimeoutError:
            raise status_exception("The gateway has not yet listed the inference endpoints of the cluster; "
                                   "try again shortly", 503) from None

    async def _read(self, inference_id: str) -> tuple[dict[str, Any], InferenceEndpointConfig]:
        if not is_inference_id(inference_id):  # no such endpoint can exist; nor may it reach a URL path
            raise not_found(inference_id)
        await self._synced()
        entry = self.index.get(inference_id)
        if entry is None:
            raise not_found(inference_id)
        if entry.value is None:  # a resource the operator also refuses
            raise entry.error if isinstance(entry.error, ElasticsearchError) else not_found(inference_id)
        return entry.obj, entry.value

    async def list(self) -> list[InferenceEndpointConfig]:
        await self._synced()
        return [entry.value for entry in self.index.endpoints() if entry.value is not None]

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        return (await self._read(inference_id))[1]

    async def backend(self, inference_id: str) -> Backend:
        obj, config = await self._read(inference_id)
        url = (obj.get("status") or {}).get("url")
        if not url or not is_ready(obj):
            condition = ready_condition(obj) or {}
            detail = condition.get("message") or condition.get("reason") or "waiting for the operator"
            raise status_exception(f"Inference endpoint [{inference_id}] is not ready: {detail}", 409)
        if at_zero(obj):
            name = obj["metadata"]["name"]
            return WakingBackend(config, url, wake_ups=self.wake_ups,
                                 wake=lambda: self._wake(name), awake=lambda: self._awake(inference_id))
        return ForwardingBackend(config, url)

    async def _wake(self, cr_name: str) -> None:
        """Ask for one replica of the endpoint at zero, unless KEDA owns the count (it
        activates on the gateway's held-request gauge)."""
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{workload_name(cr_name)}"
        try:
            deployment = await self.api.get(path)
            if scaled_by_keda(deployment) or (deployment.get("spec") or {}).get("replicas", 1) > 0:
                return
            await self.api.merge_patch(f"{path}/scale", {"spec": {"replicas": 1}})
        except KubeError as exc:
            raise _api_failure(exc) from None

    async def _awake(self, inference_id: str) -> str | None:
        """The endpoint's URL once it has replicas serving; None while it wakes (read from
        the index: holding a request costs the API server nothing)."""
        obj, _ = await self._read(inference_id)
        return (obj.get("status") or {}).get("url") if is_ready(obj) and not at_zero(obj) else None

    # ---- management ----------------------------------------------------------------
    async def create(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        stored = with_secret_references(config)
        manifest = stored.to_manifest(name=resource_name(config.inference_id), namespace=self.namespace)
        manifest["metadata"]["labels"] = dict(MANAGED_BY)
        # The Secret first, so that the operator never sees the resource without it; it is
        # owned by the resource (and deleted with it) once the resource exists.
        secret_path = self._secret_path(secret_name(config.inference_id)) if config.plain_secrets() else None
        if secret_path is not None:
            await self._synced()
            if self.index.get(config.inference_id) is not None:  # the create below refuses a race
                raise already_exists(config.inference_id)
            await self._create_unowned_secret(config)
        try:
            cr = await self.api.create(self._collection, manifest)
            if secret_path is not None:
                await self.api.merge_patch(secret_path, {"metadata": {"ownerReferences": [
                    owner_reference(cr["metadata"]["name"], cr["metadata"]["uid"])]}})
        except KubeError as exc:
            # Nothing half-made.
            if secret_path is not None:
                await self._delete_quietly(secret_path)
            if exc.status == 409:
                raise already_exists(config.inference_id) from None
            await self._delete_quietly(self._cr_path(manifest["metadata"]["name"]))
            raise _api_failure(exc) from None
        try:
            await self._wait_ready(config.inference_id, timeout, after=cr)
        except ElasticsearchError as exc:
            if exc.status == 400:  # the operator refused the spec: as if never created
                await self.delete(config.inference_id)
            raise
        return stored

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        """Change the resource; new plain secrets go to a new Secret, swapped in.

        The new Secret is owned by the resource before the resource names it, and the
        resource is replaced in one write that fails if anyone changed it meanwhile: a
        refused write leaves the old spec with its old Secret, whole, and the new Secret
        is deleted. Only then does the Secret no longer named go."""
        obj, before = await self._read(config.inference_id)
        cr_name = obj["metadata"]["name"]
        fresh = rotated_secret_name(config.inference_id) if config.plain_secrets() else None
        if fresh is not None:
            secret = owned_secret(config, obj, self.namespace, name=fresh)
            try:
                await self.api.create(self._secret_path(), secret)
            except KubeError as exc:
                raise _api_failure(exc) from None
        stored = with_secret_references(config, name=fresh)
        manifest = stored.to_manifest(name=cr_name, namespace=self.namespace)
        try:
            # resourceVersion as read: a 409 if the resource changed since.
            replaced = await self.api.replace(self._cr_path(cr_name), {**obj, "spec": manifest["spec"]})
        except KubeError as exc:
            if fresh is not None:
                await self._delete_quietly(self._secret_path(fresh))
            if exc.status == 409:
                raise status_exception(
                    f"Inference endpoint [{config.inference_id}] was changed by someone else meanwhile; "
                    "nothing was updated, try again", 409) from None
            raise _api_failure(exc) from None
        named = {ref.secret_key_ref.name for ref in stored.secret_refs().values()}
        for ref in before.secret_refs().values():
            old = ref.secret_key_ref.name
            if old not in named and is_gateway_secret(old, config.inference_id):
                named.add(old)  # once
                await self._delete_quietly(self._secret_path(old))
        await self._wait_ready(config.inference_id, timeout, after=replaced)
        return stored

    async def delete(self, inference_id: str) -> None:
        obj, _ = await self._read(inference_id)
        try:
            await self.api.delete(self._cr_path(obj["metadata"]["name"]))
        except KubeError as exc:
            raise not_found(inference_id) if exc.status == 404 else _api_failure(exc) from None
        # Kubernetes' garbage collector deletes the Secret the resource owns. Once the watch
        # has told the index, this replica's next read agrees that the endpoint is gone.
        with contextlib.suppress(TimeoutError):
            await self.index.wait_for(inference_id, lambda entry: entry is None or entry.uid != obj["metadata"]["uid"],
                                      OWN_WRITE_SEEN_WITHIN)

    async def _create_unowned_secret(self, config: InferenceEndpointConfig) -> None:
        """Create the Secret, or take over one this gateway made for an endpoint of the same
        id that is gone. Its garbage collection may still be pending, or happen between our
        create and our take-over: then the create is tried again."""
        secret = owned_secret(config, None, self.namespace)
        (label, value), = MANAGED_BY.items()
        ops = [
            {"op": "test", "path": "/metadata/labels/" + label.replace("~", "~0").replace("/", "~1"), "value": value},
            {"op": "add", "path": "/metadata/ownerReferences", "value": []},
            {"op": "add", "path": "/data", "value": secret["data"]},
        ]
        for _ in range(_SECRET_ATTEMPTS):
            try:
                await self.api.create(self._secret_path(), secret)
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise _api_failure(exc) from None
            try:
                await self.api.json_patch(self._secret_path(secret["metadata"]["name"]), ops)
                return
            except KubeError as exc:
                if exc.status != 404:  # collected meanwhile: create it again
                    raise self._secret_failure(exc, config.inference_id) from None
        raise status_exception(
            f"Secret [{secret_name(config.inference_id)}] is being deleted; try again", 409)

    def _secret_failure(self, exc: KubeError, inference_id: str) -> ElasticsearchError:
        if exc.status in (409, 422):  # exists; or exists and is not ours (a failed test)
            return status_exception(
                f"Secret [{secret_name(inference_id)}] exists and does not belong to inference endpoint "
                f"[{inference_id}]",
                409,
            )
        return _api_failure(exc)

    async def _wait_ready(self, inference_id: str, timeout: float, *, after: dict[str, Any]) -> None:
        """Return once the operator reports the resource written as ``after`` Ready;
        Elasticsearch's timeout error otherwise. Waits on the index, not on the API server.

        Even with no time to wait for Ready, the index is given a moment to see the write,
        so that this replica's next read finds what it just wrote."""
        uid, generation = after["metadata"]["uid"], int(after["metadata"].get("generation") or 0)

        appeared = False

        def seen(entry: Any) -> bool:
            nonlocal appeared
            appeared = appeared or (entry is not None and entry.uid == uid and entry.generation >= generation)
            return appeared and entry is not None

        def settled(entry: Any) -> bool:
            if not seen(entry):
                return appeared  # gone once seen: deleted meanwhile
            return is_ready(entry.obj) or refusal(entry.obj) is not None

        try:
            entry = await self.index.wait_for(inference_id, settled if timeout > 0 else seen,
                                              timeout if timeout > 0 else OWN_WRITE_SEEN_WITHIN)
        except TimeoutError:
            if timeout <= 0:
                return
            current = self.index.get(inference_id)
            condition = (ready_condition(current.obj) if current is not None else None) or {}
            detail = condition.get("message") or condition.get("reason") or "no status from the operator yet"
            raise status_exception(
                f"Timed out after [{timeout:g}s] waiting for inference endpoint [{inference_id}] to be ready "
                f"({detail}); it was created and becomes usable once ready",
                408,
            ) from None
        if entry is None:
            raise not_found(inference_id)
        refused = refusal(entry.obj)
        if refused is not None:
            raise status_exception(f"Inference endpoint [{inference_id}] is invalid: {refused}")

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self.api.delete(path)
        except KubeError as exc:
            if exc.status != 404:
                log.warning("could not delete %s: %s", path, exc)


def _api_failure(exc: KubeError) -> ElasticsearchError:
    if exc.status in (400, 422):
        return validation_exception(exc.message)
    if exc.status == 409:
        return status_exception(f"Kubernetes refused the change: {exc.message}", 409)
    if exc.status == 403:
        return ElasticsearchError(
            500, "status_exception", f"The gateway is not allowed to do this in Kubernetes: {exc.message}"
        )
    return status_exception(f"Kubernetes API error: {exc.reason or exc.status}", 503 if exc.status >= 500 else 500)
