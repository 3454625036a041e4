"""Where the HTTP API finds inference endpoints and their backends.

``EndpointStore`` is the one thing the inference routes need: look an endpoint up by
id and hand over its started backend. ``kubeinfer serve`` has exactly one endpoint
(``SingleEndpointStore``); the gateway and local mode bring their own stores.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import not_found, status_exception


@runtime_checkable
class EndpointStore(Protocol):
    @property
    def ready(self) -> bool:
        """Whether the store can answer (``/readyz``): a pod's model is loaded, a gateway has
        listed the endpoints."""
        ...

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        """The endpoint's configuration; raises ``not_found`` when there is none."""
        ...

    async def backend(self, inference_id: str) -> Backend:
        """The endpoint's backend, started and ready; raises ``ElasticsearchError`` otherwise."""
        ...

    async def list(self) -> list[InferenceEndpointConfig]:
        """Every endpoint, ordered by inference id."""
        ...


class SingleEndpointStore:
    """The one endpoint a model-server pod serves."""

    def __init__(self, config: InferenceEndpointConfig, backend: Backend) -> None:
        self.config = config
        self._backend = backend

    @property
    def ready(self) -> bool:
        return self._backend.ready

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        if inference_id != self.config.inference_id:
            raise not_found(inference_id)
        return self.config

    async def backend(self, inference_id: str) -> Backend:
        await self.get(inference_id)
        if not self._backend.ready:
            raise status_exception(f"inference endpoint [{inference_id}] is not ready yet: its model is loading", 503)
        return self._backend

    async def list(self) -> list[InferenceEndpointConfig]:
        return [self.config]
