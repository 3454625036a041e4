"""What the management API needs from a store of inference endpoints.

A store keeps endpoint configurations and the backends that serve them. Two stores
implement this contract: ``LocalEndpointStore`` (in-process backends, local mode) and
``KubernetesEndpointStore`` (InferenceEndpoint custom resources, the gateway). Both are
also the ``EndpointStore`` the inference routes read (``get``, ``backend``, ``list``).

This module also holds the pure rules both stores share: how Elasticsearch resolves the
task type of a request and how an update merges into an existing endpoint. It knows
nothing of HTTP or Kubernetes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Protocol, runtime_checkable

from pydantic import SecretStr

from ..backends.base import Backend
from kubeinfer.catalog import InferenceEndpointConfig, SecretKeyRef, TaskType, parse_endpoint, parse_task_type
from kubeinfer.errors import ElasticsearchError, status_exception


@runtime_checkable
class ManagedEndpointStore(Protocol):
    """Endpoints that can be listed, read, served, created, updated and deleted."""

    @property
    def ready(self) -> bool: ...

    async def list(self) -> list[InferenceEndpointConfig]: ...

    async def get(self, inference_id: str) -> InferenceEndpointConfig:
        """The endpoint, or ``not_found``."""

    async def backend(self, inference_id: str) -> Backend: ...

    async def create(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig:
        """Store and start ``config``; return once it serves, within ``timeout`` seconds."""

    async def update(self, config: InferenceEndpointConfig, *, timeout: float) -> InferenceEndpointConfig: ...

    async def delete(self, inference_id: str) -> None: ...


def resolve_task_type(url_task_type: str | None, body_task_type: Any) -> TaskType:
    """Elasticsearch's rule for a task type given in the URL, the body, or both."""
    url = parse_task_type(url_task_type) if url_task_type is not None else None
    if body_task_type is None:
        if url is None:
            raise status_exception("model is missing required setting [task_type]")
        return url
    body = parse_task_type(str(body_task_type))
    if url is not None and body != url:
        raise status_exception(
            f"Cannot resolve conflicting task_type parameter in the request URL [{url.value}] "
            f"and the request body [{body.value}]"
        )
    return body


def already_exists(inference_id: str) -> ElasticsearchError:
    return ElasticsearchError(
        400, "resource_already_exists_exception", f"Inference endpoint [{inference_id}] already exists"
    )


def cannot_update(inference_id: str) -> ElasticsearchError:
    return ElasticsearchError(
        404,
        "resource_not_found_exception",
        f"The inference endpoint [{inference_id}] does not exist and cannot be updated",
    )


def raw_settings(settings: Any) -> dict[str, Any]:
    """Settings as a create body carries them, secrets included (plain or as references)."""
    raw = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name in type(settings).secret_fields:
        value = getattr(settings, name)
        if isinstance(value, dict):
            raw[name] = {key: _raw_secret(item) for key, item in value.items()}
        elif value is not None:
            raw[name] = _raw_secret(value)
    return raw


def _raw_secret(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value.model_dump(mode="json", by_alias=True)


def create_body(config: InferenceEndpointConfig) -> dict[str, Any]:
    """The create body that rebuilds ``config`` through ``parse_endpoint``, secrets included."""
    body: dict[str, Any] = {
        "service": config.service,
        "service_settings": raw_settings(config.service_settings),
        "task_settings": config.task_settings.model_dump(mode="json", exclude_none=True),
    }
    if config.chunking_settings is not None:
        body["chunking_settings"] = config.chunking_settings.model_dump(mode="json", exclude_none=True)
    return body


def merge_update(existing: InferenceEndpointConfig, body: Mapping[str, Any]) -> InferenceEndpointConfig:
    """Elasticsearch's update: new service and task settings merged over the existing ones.

    Settings not named in the body keep their values, secrets included; the merged whole is
    validated again by the catalog.
    """
    if not isinstance(body, Mapping):
        raise ElasticsearchError(400, "parse_exception", "request body is required")
    unknown = set(body) - {"service_settings", "task_settings", "task_type", "chunking_settings"}
    if unknown:
        raise ElasticsearchError(
            400, "illegal_argument_exception", f"Unknown settings {sorted(unknown)} in the update request"
        )
    if "task_type" in body and body["task_type"] is not None:
        if parse_task_type(str(body["task_type"])) != existing.task_type:
            raise status_exception("Task type must match the task type of the existing endpoint")
    merged = create_body(existing)
    for scope in ("service_settings", "task_settings"):
        change = body.get(scope)
        if change is None:
            continue
        if not isinstance(change, Mapping):
            raise ElasticsearchError(400, "parse_exception", f"[{scope}] must be an object")
        merged[scope] = {**merged.get(scope, {}), **change}
    if body.get("chunking_settings") is not None:
        merged["chunking_settings"] = body["chunking_settings"]
    return parse_endpoint(existing.inference_id, existing.task_type, merged)


def with_model_facts(config: InferenceEndpointConfig, facts: Mapping[str, Any] | None) -> InferenceEndpointConfig:
    """``config`` with what is known of its model once served (``dimensions``,
    ``similarity``) filled in where unset, as Elasticsearch stores them after creation."""
    settings = config.service_settings
    learnt = {
        k: v for k, v in (facts or {}).items()
        if k in type(settings).model_fields and getattr(settings, k, None) is None and v is not None
    }
    if not learnt:
        return config
    try:
        updated = type(settings).model_validate({**settings.model_dump(), **learnt})
    except ValueError:
        return config
    return replace(config, service_settings=updated)
