"""The InferenceEndpoints of one namespace, by inference id, kept up to date by one watch.

The gateway answers from this index alone: a lookup is a dictionary read, never a call
to the API server, and whoever waits for an endpoint to change (a PUT waiting for Ready,
a request held while its endpoint wakes from zero) waits on the index's next change. One
``Informer`` feeds it (list, then watch; list again after a 410 or a dropped stream, so
that an endpoint deleted meanwhile is forgotten); nothing else writes it.

A resource being deleted (``deletionTimestamp`` set, finalizers pending) is gone as far
as the index's readers are concerned, as Elasticsearch forgets an endpoint at once.

What an object means beyond its id is the caller's: ``parse`` turns each object into the
value readers get (for the gateway, the endpoint's configuration), once per change, and
may raise ``ValueError``-like errors for a resource it cannot read, which is then kept
with its error. This module knows the resource's facts, not the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from .kube import Informer, KubeClient, path_of
from .resource import API_VERSION, PLURAL

log = logging.getLogger("kubeinfer.index")

T = TypeVar("T")


def inference_id_of(obj: dict[str, Any]) -> str:
    """The endpoint's id: ``spec.inferenceId``, else the resource's name (as Elasticsearch
    clients know the endpoint)."""
    return str((obj.get("spec") or {}).get("inferenceId") or (obj.get("metadata") or {}).get("name") or "")


@dataclass(frozen=True)
class IndexedEndpoint(Generic[T]):
    """One resource as last seen, and what ``parse`` made of it (or why it could not)."""

    obj: dict[str, Any]
    value: T | None
    error: Exception | None = None

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def uid(self) -> str | None:
        return self.obj["metadata"].get("uid")

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 0)


@dataclass
class EndpointIndex(Generic[T]):
    """``inference id -> IndexedEndpoint`` for the namespace ``namespace``.

    ``start()`` begins the watch; ``stop()`` ends it. Readers that come before the first
    list wait for it, ``sync_timeout`` seconds at most.
    """

    client: KubeClient
    namespace: str
    parse: Callable[[dict[str, Any]], T]
    sync_timeout: float = 10.0
    # Called with each inference id that leaves the index (deleted, or gone at a relist).
    forgotten: Callable[[str], None] | None = None
    _entries: dict[str, IndexedEndpoint[T]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    informer: Informer = field(init=False)

    def __post_init__(self) -> None:
        self.informer = Informer(self.client, path_of(API_VERSION, PLURAL, self.namespace), self._event,
                                 relisted=self._relisted)

    # ---- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin the watch; readers wait for its first list (``synced``) themselves."""
        if self._task is None:
            self._task = asyncio.create_task(self.informer.run(), name=f"endpoint-index-{self.namespace}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def synced(self) -> None:
        """Return once the first list is in."""
        await self.informer.listed.wait()

    # ---- reading -------------------------------------------------------------------------------
    def get(self, inference_id: str) -> IndexedEndpoint[T] | None:
        return self._entries.get(inference_id)

    def endpoints(self) -> list[IndexedEndpoint[T]]:
        return [self._entries[key] for key in sorted(self._entries)]

    async def wait_for(self, inference_id: str, predicate: Callable[[IndexedEndpoint[T] | None], bool],
                       timeout: float | None) -> IndexedEndpoint[T] | None:
        """The endpoint once ``predicate`` holds for it (``None``: absent); raises
        ``TimeoutError`` after ``timeout`` seconds. Waits on the index's changes: no request
        to the API server is made for a waiter, however many there are."""
        async with asyncio.timeout(timeout):
            await self.synced()
            while True:
                changed = self._changed
                entry = self.get(inference_id)
                if predicate(entry):
                    return entry
                await changed.wait()

    # ---- fed by the watch ----------------------------------------------------------------------
    async def _event(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED" or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._forget(obj)
        elif event_type in ("ADDED", "MODIFIED"):
            self._keep(obj)
        self._notify()

    async def _relisted(self, items: list[dict[str, Any]]) -> None:
        before = set(self._entries)
        self._entries.clear()
        for obj in items:
            if not (obj.get("metadata") or {}).get("deletionTimestamp"):
                self._keep(obj)
        for inference_id in sorted(before - set(self._entries)):
            self._gone(inference_id)
        self._notify()

    def _keep(self, obj: dict[str, Any]) -> None:
        inference_id = inference_id_of(obj)
        held = self._entries.get(inference_id)
        if held is not None and held.name != obj["metadata"]["name"]:
            # Two resources claim one id: the first one stays, as Elasticsearch keeps the
            # endpoint that exists and refuses the second.
            log.warning("InferenceEndpoints %s and %s both claim the inference id [%s]; %s is ignored",
                        held.name, obj["metadata"]["name"], inference_id, obj["metadata"]["name"])
            return
        try:
            self._entries[inference_id] = IndexedEndpoint(obj, self.parse(obj))
        except Exception as exc:  # a resource the parser refuses is kept with its error
            self._entries[inference_id] = IndexedEndpoint(obj, None, exc)

    def _forget(self, obj: dict[str, Any]) -> None:
        inference_id = inference_id_of(obj)
        held = self._entries.get(inference_id)
        if held is not None and held.name == obj["metadata"]["name"]:
            del self._entries[inference_id]
            self._gone(inference_id)

    def _gone(self, inference_id: str) -> None:
        if self.forgotten is not None:
            self.forgotten(inference_id)

    def _notify(self) -> None:
        # Waiters hold the event of their time; a new one is armed for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
