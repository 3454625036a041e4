"""Elasticsearch's preconfigured endpoints over any ``ManagedEndpointStore``.

GET lists them from the start; the first inference request starts one (in local mode
the model loads in this process; in a cluster the gateway creates its resource and the
operator deploys it), and a create under their ids is refused as Elasticsearch refuses
it. Knows nothing of where endpoints live: that is the wrapped store's business.
"""

from __future__ import annotations

import asyncio

from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig, is_reserved, preconfigured_endpoints, reserved_id_error_reason
from kubeinfer.errors import ElasticsearchError, status_exception
from .store import ManagedEndpointStore

# How long the first request to a preconfigured endpoint waits for its model to start.
START_TIMEOUT = 300.0


class WithPreconfiguredEndpoints:
    """A ``ManagedEndpointStore`` that also holds Elasticsearch's preconfigured endpoints."""

    def __init__(self, store: ManagedEndpointStore, *, start_timeout: float = START_TIMEOUT) -> None:
        self.store = store
        self.start_timeout = start_timeout
        self.preconfigured = {c.inference_id: c for c in preconfigured_endpoints()}
        self._starting: dict[str, asyncio.Lock] = {}

    @property
    def ready(self) -> bool:
        return self.store.ready

    async def list(self) -> list[InferenceEndpointConfig]:
        present = await self.store.list()
        ids = {c.inference_id for c in present}
        return present + [c for i, c in self.preconfigured.items() if i not in ids]

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        try:
            return await self.store.get(inference_id)
        except ElasticsearchError as exc:
            if exc.status == 404 and inference_id in self.preconfigured:
                return self.preconfigured[inference_id]
            raise

    async def backend(self, inference_id: str) -> Backend:
        try:
            return await self.store.backend(inference_id)
        except ElasticsearchError as exc:
            if exc.status != 404 or inference_id not in self.preconfigured:
                raise
        lock = self._starting.setdefault(inference_id, asyncio.Lock())
        async with lock:
            try:
                return await self.store.backend(inference_id)
            except ElasticsearchError as exc:
                if exc.status != 404:
                    raise
            await self.store.create(self.preconfigured[inference_id], timeout=self.start_timeout)
        return await self.store.backend(inference_id)

    async def create(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        if is_reserved(config.inference_id):
            raise status_exception(reserved_id_error_reason(config.inference_id))
        return await self.store.create(config, timeout=timeout)

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        if is_reserved(config.inference_id):
            raise status_exception(f"[{config.inference_id}] is a reserved inference endpoint. "
                                   "Cannot update a reserved inference endpoint.")
        return await self.store.update(config, timeout=timeout)

    async def delete(self, inference_id: str) -> None:
        if is_reserved(inference_id):
            raise status_exception(f"[{inference_id}] is a reserved inference endpoint. "
                                   "Cannot delete a reserved inference endpoint.")
        await self.store.delete(inference_id)
