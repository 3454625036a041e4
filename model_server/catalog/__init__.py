"""The service catalog: every service of Elasticsearch's create inference API, its task
types, its settings models and how to build its backend.

The operator, the CRD generator, the gateway and local mode read services from here and
nowhere else. Importing the catalog never imports torch or a provider SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base import (
    AdaptiveAllocations, RateLimit, SecretKeyName, SecretKeyRef, SecretValue, ServiceSpec, Settings, Similarity,
    TaskType,
)
from .elasticsearch import BUILTIN_MODELS
from .endpoint import (
    API_VERSION, KIND, ChunkingSettings, InferenceEndpointConfig, from_manifest, get_service, parse_endpoint,
    parse_task_type, validate_inference_id,
)
from .registry import SERVICES

if TYPE_CHECKING:
    from ..backends.base import Backend


def service_task_pairs() -> list[tuple[str, TaskType]]:
    """Every (service, task type) the catalog allows, in a stable order."""
    return [(name, task) for name in sorted(SERVICES) for task in sorted(SERVICES[name].task_types)]


def create_backend(config: InferenceEndpointConfig, **options: Any) -> "Backend":
    """Build the backend that serves ``config`` (secrets must already be resolved)."""
    module_name, _, func = config.spec.backend.partition(":")
    factory = getattr(importlib.import_module(module_name), func)
    return factory(config, **options)


__all__ = [
    "API_VERSION", "KIND", "AdaptiveAllocations", "BUILTIN_MODELS", "ChunkingSettings", "InferenceEndpointConfig",
    "RateLimit", "SERVICES", "SecretKeyName", "SecretKeyRef", "SecretValue", "ServiceSpec", "Settings",
    "Similarity", "TaskType", "create_backend", "from_manifest", "get_service", "parse_endpoint",
    "parse_task_type", "service_task_pairs", "validate_inference_id",
]
