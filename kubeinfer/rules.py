"""The CRD's CEL rules (``x-kubernetes-validations``), derived from the service catalog.

The OpenAPI schema of ``serviceSettings`` and ``taskSettings`` is the union of every
service's settings; these rules narrow it per service and task type, so that
``kubectl apply`` rejects what the catalog would reject: a task type the service does not
support, a setting the service does not know, a required setting left out, a value
outside what the service accepts. Messages follow Elasticsearch's where CEL can say them.

Pure functions of the catalog; nothing here talks to a cluster.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any, Iterable

from kubeinfer.catalog import SERVICES, Settings, TaskType
from kubeinfer.catalog._base import together_reason
from kubeinfer.catalog.endpoint import CHUNKING_SETTINGS

from .structural import model_schema

# (camelCase field of the CR, Elasticsearch's name of the same settings)
SCOPES = (("serviceSettings", "service_settings"), ("taskSettings", "task_settings"))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(v) for v in values) + "]"


def models_by_pair(scope: str) -> dict[tuple[str, TaskType], type[Settings]]:
    """(service, task type) -> the settings model of ``scope`` for that pair."""
    pairs = {}
    for name, spec in sorted(SERVICES.items()):
        for task in spec.task_types:
            model = spec.service_settings_model(task) if scope == "serviceSettings" else spec.task_settings_model(task)
            pairs[(name, task)] = model
    return pairs


def task_type_rule() -> dict[str, str]:
    """The service must support the task type."""
    table = ", ".join(
        f"{_quote(name)}: {_list(sorted(t.value for t in spec.task_types))}" for name, spec in sorted(SERVICES.items())
    )
    return {
        "rule": f"self.taskType in {{{table}}}[self.service]",
        "messageExpression": "'The [' + self.service + '] service does not support task type [' + self.taskType + ']'",
    }


def settings_rules(union: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """Per service and task type: unknown settings, required settings, narrower enums.

    ``union`` maps each scope (``serviceSettings``, ``taskSettings``) to its merged
    schema, whose properties are every setting any service accepts.
    """
    rules: list[dict[str, str]] = []
    for scope, es_scope in SCOPES:
        known = union[scope]["properties"]
        # Rules alike for several task types of a service are written once.
        grouped: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for (service, task), model in models_by_pair(scope).items():
            for body, message in _pair_rules(model, scope, es_scope, known, service):
                grouped[(service, body, message)].append(task.value)
        for (service, body, message), tasks in grouped.items():
            guard = f"self.service != {_quote(service)}"
            if len(tasks) < len(SERVICES[service].task_types):
                guard += f" || !(self.taskType in {_list(sorted(tasks))})"
            rules.append({"rule": f"{guard} || ({body})", "messageExpression": message})
    return rules


def _pair_rules(
    model: type[Settings], scope: str, es_scope: str, known: dict[str, Any], service: str
) -> list[tuple[str, str]]:
    schema = model_schema(model)
    accepted = schema.get("properties") or {}
    path = f"self.{scope}"
    # serviceSettings is required by the schema; taskSettings may be absent.
    present = "" if scope == "serviceSettings" else f"has({path}) && "
    absent = "" if scope == "serviceSettings" else f"!has({path}) || "
    out = []

    unknown = sorted(set(known) - set(accepted))
    if unknown:
        body = f"{absent}" + " && ".join(f"!has({path}.{name})" for name in unknown)
        message = (
            f"'[{es_scope}] of the [{service}] service for task type [' + self.taskType + '] accepts only "
            f"[{', '.join(sorted(accepted)) or 'no settings'}]'"
        )
        out.append((body, message))

    required = list(schema.get("required") or [])
    if required:
        body = present + " && ".join(f"has({path}.{name})" for name in required)
        first_missing = "''"
        for name in reversed(required):
            first_missing = f"({absent}!has({path}.{name}) ? {_quote(name)} : {first_missing})"
        out.append((body, f"'[{es_scope}] does not contain the required setting [' + {first_missing} + ']'"))

    for group in model.one_of_required:
        body = " || ".join(f"has({path}.{name})" for name in group)
        if present:
            body = f"{present}({body})"
        out.append((body, _quote(f"[{es_scope}] does not contain one of the required settings [{', '.join(group)}]")))

    for group in model.mutually_exclusive:
        # At most one: no two of the group given together.
        body = f"{absent}" + " && ".join(
            f"!(has({path}.{a}) && has({path}.{b}))" for a, b in itertools.combinations(group, 2))
        out.append((body, _quote(f"[{es_scope}] must have only one of the settings [{', '.join(group)}]")))

    for group in model.required_together:
        every = " && ".join(f"has({path}.{name})" for name in group)
        none = " && ".join(f"!has({path}.{name})" for name in group)
        out.append((f"{absent}({every}) || ({none})", _quote(together_reason(es_scope, group))))

    for name, prop in sorted(accepted.items()):
        wider = known.get(name, {}).get("enum")
        if "enum" in prop and wider and set(prop["enum"]) != set(wider):
            # Any letter case, as the schema's pattern lets through.
            lowered = _list(sorted({v.lower() for v in prop["enum"]}))
            body = f"{absent}!has({path}.{name}) || {path}.{name}.lowerAscii() in {lowered}"
            out.append((body, _quote(
                f"[{es_scope}] [{name}] of the [{service}] service must be one of [{', '.join(prop['enum'])}] "
                "for this task type"
            )))
    return out


def chunking_rules() -> list[dict[str, str]]:
    """Rules on ``chunkingSettings`` (``self``): what each strategy allows and requires."""
    every = sorted({name for allowed, _ in CHUNKING_SETTINGS.values() for name in allowed} - {"strategy"})
    rules = [{
        "rule": "has(self.strategy) || (" + " && ".join(f"!has(self.{n})" for n in every) + ")",
        "message": "Can't generate Chunker without ChunkingStrategy provided",
    }]
    for strategy, (allowed, required) in CHUNKING_SETTINGS.items():
        guard = f"!has(self.strategy) || self.strategy != {_quote(strategy)}"
        unknown = [n for n in every if n not in allowed]
        if unknown:
            rules.append({
                "rule": f"{guard} || (" + " && ".join(f"!has(self.{n})" for n in unknown) + ")",
                "message": f"[{strategy}] chunking settings take only [{', '.join(allowed)}]",
            })
        if required:
            first_missing = "''"
            for name in reversed(required):
                first_missing = f"(!has(self.{name}) ? {_quote(name)} : {first_missing})"
            rules.append({
                "rule": f"{guard} || (" + " && ".join(f"has(self.{n})" for n in required) + ")",
                "messageExpression": f"'[chunking_settings] does not contain the required setting [' + {first_missing} + ']'",
            })
    rules += [
        {"rule": "!has(self.strategy) || self.strategy != 'word' || !has(self.max_chunk_size) || "
                 "self.max_chunk_size <= 300",
         "message": "[chunking_settings] [max_chunk_size] must be a less than or equal to [300] for word chunking"},
        {"rule": "!has(self.strategy) || self.strategy != 'word' || !has(self.max_chunk_size) || !has(self.overlap) || "
                 "self.overlap <= self.max_chunk_size / 2",
         "message": "[chunking_settings] [overlap] must be a less than or equal to half of [max_chunk_size]"},
        {"rule": "!has(self.strategy) || self.strategy != 'sentence' || !has(self.max_chunk_size) || "
                 "self.max_chunk_size >= 20",
         "message": "[chunking_settings] [max_chunk_size] must be a greater than or equal to [20] for sentence chunking"},
    ]
    return rules
