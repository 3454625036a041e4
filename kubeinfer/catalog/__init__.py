"""The service catalog: every service of Elasticsearch's create inference API, its task
types and its settings models.

The operator, the CRD generator, the gateway and local mode read services from here and
nowhere else. The catalog names no backend: the backends keep the map from each service
to the code that serves it, so the catalog imports no serving code at all.
"""

from __future__ import annotations

from ._base import (
    AdaptiveAllocations, RateLimit, SecretKeyName, SecretKeyRef, SecretValue, ServiceSpec, Settings, Similarity,
    TaskType,
)
from .elasticsearch import BUILTIN_MODELS
from .endpoint import (
    ChunkingSettings, InferenceEndpointConfig, check_task_type, returns_documents, from_manifest, get_service, parse_endpoint,
    parse_task_type, validate_inference_id, validate_settings,
)
from .preconfigured import PRECONFIGURED, is_reserved, reserved_id_error_reason
from .registry import SERVICES


def preconfigured_endpoints() -> list[InferenceEndpointConfig]:
    """Elasticsearch's preconfigured endpoints, as endpoints of the catalog."""
    return [parse_endpoint(inference_id, task, body) for inference_id, (task, body) in sorted(PRECONFIGURED.items())]


def service_task_pairs() -> list[tuple[str, TaskType]]:
    """Every (service, task type) the catalog allows, in a stable order."""
    return [(name, task) for name in sorted(SERVICES) for task in sorted(SERVICES[name].task_types)]


__all__ = [
    "AdaptiveAllocations", "BUILTIN_MODELS", "ChunkingSettings", "InferenceEndpointConfig",
    "PRECONFIGURED", "RateLimit", "SERVICES", "SecretKeyName", "SecretKeyRef", "SecretValue", "ServiceSpec",
    "Settings",
    "Similarity", "TaskType", "from_manifest", "get_service", "parse_endpoint",
    "check_task_type", "is_reserved", "parse_task_type", "preconfigured_endpoints", "reserved_id_error_reason",
    "returns_documents", "service_task_pairs", "validate_inference_id", "validate_settings",
]
