"""Elasticsearch's inference region policy API and its enforcement, over any
``ManagedEndpointStore``.

``GET``, ``PUT`` (``?force``) and ``DELETE /_inference/_region_policy`` read and write a
``RegionPolicyHolder``: ``FileRegionPolicy`` in local mode (a file of the state
directory), ``ConfigMapRegionPolicy`` in a cluster (a ConfigMap, kept up with by one
watch). ``WithRegionPolicy`` holds every endpoint to the policy: a create or update
outside it is refused, and so is inference on an endpoint left outside it by a forced
policy. A new policy that existing endpoints break is refused unless ``force=true``.

What a region is, and which setting names it, is the catalog's and ``kubeinfer.region_policy``'s
business; where endpoints live is the wrapped store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Protocol

from fastapi import APIRouter, Request

from ..api.inference_request import parse_boolean_flag
from ..api.request_body import read_json_body
from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError, status_exception
from kubeinfer.kube import Informer, KubeClient, KubeError
from kubeinfer.region_policy import (
    RegionPolicy, RegionPolicyDocument, check_endpoint, new_document, parse_put_body, region_refusal,
)
from kubeinfer.region_policy_store import (
    CONFIGMAP_NAME, SELECTOR, InvalidRegionPolicy, configmap_path, document_configmap, document_of,
)
from .store import ManagedEndpointStore

log = logging.getLogger("kubeinfer.gateway")

PATH = "/_inference/_region_policy"
# How long a write of this process may take to come back through the watch.
OWN_WRITE_SEEN_WITHIN = 5.0


class RegionPolicyHolder(Protocol):
    """Where the policy is kept; ``current`` answers from memory."""

    @property
    def ready(self) -> bool:
        """Whether the policy is known: before, no endpoint can be held to it."""

    def current(self) -> RegionPolicyDocument | None: ...

    async def put(self, document: RegionPolicyDocument) -> None: ...

    async def delete(self) -> bool:
        """Remove the policy; False when there was none."""


class FileRegionPolicy:
    """Local mode's policy: ``<state dir>/region_policy.json``, private to the user, read
    once at start."""

    def __init__(self, directory: str | Path | None) -> None:
        self.path = Path(directory).expanduser() / "region_policy.json" if directory is not None else None
        self._document: RegionPolicyDocument | None = None
        if self.path is not None and self.path.is_file():
            try:
                self._document = RegionPolicyDocument.model_validate_json(self.path.read_bytes())
            except ValueError as exc:
                log.error("ignoring the region policy in %s: %s", self.path, type(exc).__name__)

    @property
    def ready(self) -> bool:
        return True

    def current(self) -> RegionPolicyDocument | None:
        return self._document

    async def put(self, document: RegionPolicyDocument) -> None:
        if self.path is not None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    json.dump(document.body(), out, indent=2, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise status_exception(f"Could not store the region policy in [{self.path}]: "
                                       f"{exc.strerror or type(exc).__name__}", 500) from None
        self._document = document

    async def delete(self) -> bool:
        existed = self._document is not None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self._document = None
        return existed


class ConfigMapRegionPolicy:
    """The cluster's policy: the ConfigMap ``kubeinfer-region-policy`` in ``namespace``,
    known through one watch (``run``); writes wait until the watch has seen them."""

    def __init__(self, api: KubeClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._document: RegionPolicyDocument | None = None
        self._version: str | None = None
        self._changed = asyncio.Condition()
        self.informer = Informer(api, configmap_path(namespace), self._event, self._listed, label_selector=SELECTOR)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.informer.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def ready(self) -> bool:
        return self.informer.listed.is_set()

    def current(self) -> RegionPolicyDocument | None:
        return self._document

    async def _event(self, event_type: str, obj: dict[str, Any]) -> None:
        if (obj.get("metadata") or {}).get("name") != CONFIGMAP_NAME:
            return
        await self._seen(None if event_type == "DELETED" else obj)

    async def _listed(self, items: list[dict[str, Any]]) -> None:
        found = [obj for obj in items if (obj.get("metadata") or {}).get("name") == CONFIGMAP_NAME]
        await self._seen(found[0] if found else None)

    async def _seen(self, obj: dict[str, Any] | None) -> None:
        async with self._changed:
            if obj is None:
                self._document, self._version = None, None
            else:
                try:
                    self._document = document_of(obj)
                except InvalidRegionPolicy as exc:
                    log.error("the region policy in ConfigMap %s/%s is invalid and is ignored: %s",
                              self.namespace, CONFIGMAP_NAME, exc)
                    self._document = None
                self._version = (obj.get("metadata") or {}).get("resourceVersion")
            self._changed.notify_all()

    async def _until(self, seen: Callable[[], bool]) -> None:
        with contextlib.suppress(TimeoutError):
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(seen), OWN_WRITE_SEEN_WITHIN)

    async def put(self, document: RegionPolicyDocument) -> None:
        body = document_configmap(document, self.namespace)
        path = configmap_path(self.namespace, CONFIGMAP_NAME)
        try:
            existing = await self.api.get_or_none(path)
            if existing is None:
                written = await self.api.create(configmap_path(self.namespace), body)
            else:
                meta = existing["metadata"]
                # resourceVersion as read: a 409 if someone changed it since; the chart's labels stay.
                body["metadata"] = {**meta, "labels": {**(meta.get("labels") or {}), **body["metadata"]["labels"]}}
                written = await self.api.replace(path, body)
        except KubeError as exc:
            raise _api_failure(exc) from None
        version = written["metadata"].get("resourceVersion")
        await self._until(lambda: self._version == version)

    async def delete(self) -> bool:
        try:
            await self.api.delete(configmap_path(self.namespace, CONFIGMAP_NAME))
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise _api_failure(exc) from None
        await self._until(lambda: self._version is None)
        return True


def _api_failure(exc: KubeError) -> ElasticsearchError:
    if exc.status == 409:
        return status_exception("The region policy was changed by someone else meanwhile; nothing was changed, "
                                "try again", 409)
    if exc.status == 403:
        return status_exception(f"The gateway is not allowed to keep the region policy in Kubernetes: {exc.message}",
                                500)
    return status_exception(f"Kubernetes API error: {exc.reason or exc.status}", 503 if exc.status >= 500 else 500)


def current_policy(holder: RegionPolicyHolder) -> RegionPolicy | None:
    document = holder.current()
    return document.region_policy if document is not None else None


class WithRegionPolicy:
    """A ``ManagedEndpointStore`` whose endpoints are held to the region policy."""

    def __init__(self, store: ManagedEndpointStore, holder: RegionPolicyHolder) -> None:
        self.store = store
        self.holder = holder

    @property
    def ready(self) -> bool:
        return self.store.ready and self.holder.ready

    async def list(self) -> list[InferenceEndpointConfig]:
        return await self.store.list()

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        return await self.store.get(inference_id)

    async def backend(self, inference_id: str) -> Backend:
        policy = current_policy(self.holder)
        if policy is not None:
            # Checked first: an endpoint outside the policy is neither woken nor called,
            # and says why rather than that its operator marked it not ready.
            try:
                config = await self.store.get(inference_id)
            except ElasticsearchError:
                config = None  # the store's backend answers for what it does not hold
            if config is not None:
                check_endpoint(config, policy)
        return await self.store.backend(inference_id)

    async def create(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        check_endpoint(config, current_policy(self.holder))
        return await self.store.create(config, timeout=timeout)

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        check_endpoint(config, current_policy(self.holder))
        return await self.store.update(config, timeout=timeout)

    async def delete(self, inference_id: str) -> None:
        await self.store.delete(inference_id)


# The name of who calls, for created_by and updated_by: the authenticated user, if any.
CallerName = Callable[[Request], "str | None"]


def local_user(request: Request) -> str | None:
    """Local mode has no authentication: the user running it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def region_policy_router(store: ManagedEndpointStore, holder: RegionPolicyHolder, *,
                         caller: CallerName = local_user) -> APIRouter:
    """``GET``, ``PUT`` and ``DELETE /_inference/_region_policy``; ``store`` lists the
    endpoints a new policy is checked against."""
    router = APIRouter()

    async def get_policy() -> dict[str, Any]:
        document = holder.current()
        if document is None:
            raise ElasticsearchError(404, "resource_not_found_exception", "No inference region policy is set")
        return document.body()

    async def put_policy(request: Request) -> dict[str, Any]:
        body = await read_json_body(request)
        policy = parse_put_body(body)
        force = parse_boolean_flag(request.query_params.get("force"))
        if not force:
            denied = sorted(config.inference_id for config in await store.list()
                            if region_refusal(config, policy) is not None)
            if denied:
                raise status_exception(
                    f"The region policy would deny access to inference endpoints [{', '.join(denied)}]; "
                    f"use [force=true] to apply it anyway")
        user = caller(request)
        existing = holder.current()
        document = existing.replaced_by(policy, user) if existing is not None else new_document(policy, user)
        await holder.put(document)
        return document.body()

    async def delete_policy() -> dict[str, Any]:
        if not await holder.delete():
            raise ElasticsearchError(404, "resource_not_found_exception", "No inference region policy is set")
        return {"acknowledged": True}

    router.add_api_route(PATH, get_policy, methods=["GET"])
    router.add_api_route(PATH, put_policy, methods=["PUT"])
    router.add_api_route(PATH, delete_policy, methods=["DELETE"])
    return router
