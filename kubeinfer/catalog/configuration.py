"""Each service's configuration as Elasticsearch's ``GET _inference/_services`` answers it
(``InferenceServiceConfiguration``): the task types, and for every setting of
``service_settings`` its label, description, whether it is required, secret (sensitive)
or updatable, its type and the task types that take it. Kibana builds its forms from it.

Derived from the settings models alone; a pure function of the catalog.
"""

from __future__ import annotations

import typing
from enum import Enum
from typing import Any

from pydantic import BaseModel

from ._base import RateLimit, ServiceSpec, TaskType
from .registry import SERVICES

# Words that are not capitalised the ordinary way in a label.
_WORDS = {"api": "API", "id": "ID", "url": "URL", "json": "JSON", "ai": "AI", "aws": "AWS", "rpm": "RPM"}
# Settings an update may change (Elasticsearch's update API): secrets and the rate limit.
_UPDATABLE = {"rate_limit.requests_per_minute"}


def _label(name: str) -> str:
    return " ".join(_WORDS.get(word, word.capitalize()) for word in name.split("_"))


def _field_type(annotation: Any) -> str:
    """Elasticsearch's SettingsConfigurationFieldType: str, int, bool, list or map."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is not None and origin not in (dict, list) and args:
        # A union (X | None) or an annotated type: its first real member.
        return _field_type(args[0])
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "map"
    if origin is list:
        return "list"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "str"
    return "str"


def _entries(spec: ServiceSpec) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    for task in spec.task_types:
        model = spec.service_settings_model(task)
        for name, info in model.model_fields.items():
            if name == "rate_limit":
                key, kind, description = "rate_limit.requests_per_minute", "int", \
                    RateLimit.model_fields["requests_per_minute"].description
                required, default = False, spec.rate_limit_for(task)
            else:
                key, kind, description = name, _field_type(info.annotation), info.description
                if name in model.secret_fields and typing.get_origin(info.annotation) is not dict:
                    kind = "str"  # a plain string over the API (a reference only in a CR)
                required, default = info.is_required(), None
            entry = fields.setdefault(key, {
                "label": "Rate Limit" if key.startswith("rate_limit") else _label(key),
                "required": True, "sensitive": name in model.secret_fields,
                "updatable": name in model.secret_fields or key in _UPDATABLE,
                "type": kind, "supported_task_types": [], "description": description,
                "default_value": default,
            })
            entry["required"] = entry["required"] and required
            entry["description"] = entry["description"] or description
            if entry["default_value"] is None:
                entry["default_value"] = default
            entry["supported_task_types"].append(task.value)
    out = {}
    for key, entry in sorted(fields.items()):
        item = {k: v for k, v in entry.items() if v is not None}
        # Required where it is supported: Kibana asks for it for those task types only.
        item["supported_task_types"] = sorted(set(item["supported_task_types"]))
        out[key] = item
    return out


def service_configuration(spec: ServiceSpec) -> dict[str, Any]:
    return {
        "service": spec.name,
        "name": spec.label or spec.name,
        "task_types": sorted(t.value for t in spec.task_types),
        "configurations": _entries(spec),
    }


def services_configurations(task_type: TaskType | None = None) -> list[dict[str, Any]]:
    """Every service (those that support ``task_type``, when given), by service name."""
    return [
        service_configuration(spec) for name, spec in sorted(SERVICES.items())
        if task_type is None or spec.supports(task_type)
    ]
