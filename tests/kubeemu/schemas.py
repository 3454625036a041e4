"""The schemas the emulator knows objects by: the OpenAPI definitions of the built-in kinds
(as published by Kubernetes and shipped in the ``kubernetes-validate`` wheel) and the
``openAPIV3Schema`` of each served CRD version.

``Schema`` walks either kind of schema for what patching needs (list types and their map
keys, patch strategies); ``prune``, ``default`` and ``problems`` apply a CRD's structural
schema as the API server does on every write (its CEL rules run by ``kubeinfer.cel_rules``,
as the offline admission check runs them). This module knows schemas, not objects'
storage or HTTP.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
from jsonschema import Draft4Validator

from kubeinfer.cel_rules import field_path, rule_failures

_SCHEMAS_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


@functools.lru_cache(maxsize=1)
def definitions() -> dict[str, dict[str, Any]]:
    """The built-in types' definitions, by name (``io.k8s.api.apps.v1.Deployment``)."""
    newest = max((p for p in _SCHEMAS_DIR.iterdir() if p.name.endswith("-local")),
                 key=lambda p: tuple(int(x) for x in p.name[1:].split("-")[0].split(".")))
    return json.loads((newest / "_definitions.json").read_text())["$defs"]


@functools.lru_cache(maxsize=None)
def builtin_definition(api_version: str, kind: str) -> str | None:
    group, _, version = api_version.rpartition("/")
    for name, node in definitions().items():
        for gvk in node.get("x-kubernetes-group-version-kind", ()):
            if (gvk.get("group", ""), gvk["version"], gvk["kind"]) == (group, version, kind):
                return name
    return None


class Schema:
    """A node of a schema; ``Schema(None)`` knows nothing (maps merge, lists are atomic)."""

    __slots__ = ("node",)

    def __init__(self, node: dict[str, Any] | None):
        self.node = _resolved(node) if node else None

    def child(self, name: str) -> "Schema":
        if not self.node:
            return Schema(None)
        props = self.node.get("properties") or {}
        if name in props:
            return Schema(props[name])
        extra = self.node.get("additionalProperties")
        return Schema(extra if isinstance(extra, dict) else None)

    def items(self) -> "Schema":
        return Schema(self.node.get("items") if self.node else None)

    def _get(self, key: str) -> Any:
        return self.node.get(key) if self.node else None

    def list_type(self) -> str:
        """``map``, ``set`` or ``atomic``, as server-side apply treats the list."""
        return self._get("x-kubernetes-list-type") or ("map" if self.map_keys() else "atomic")

    def map_keys(self) -> list[str]:
        keys = self._get("x-kubernetes-list-map-keys")
        if keys:
            return list(keys)
        merge_key = self._get("x-kubernetes-patch-merge-key")
        return [merge_key] if merge_key and self._get("x-kubernetes-list-type") == "map" else []

    def atomic_map(self) -> bool:
        return self._get("x-kubernetes-map-type") == "atomic"

    def patch_strategy(self) -> tuple[str, ...]:
        return tuple(filter(None, (self._get("x-kubernetes-patch-strategy") or "").split(",")))

    def patch_merge_key(self) -> str | None:
        return self._get("x-kubernetes-patch-merge-key")


# Nodes with a $ref, by id, with what they resolve to: definitions never change, and a
# node is kept alive with its entry so that its id is not reused.
_RESOLVED: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node and "allOf" not in node:
        return node
    hit = _RESOLVED.get(id(node))
    if hit is None or hit[0] is not node:
        hit = _RESOLVED[id(node)] = (node, _resolve(node))
    return hit[1]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while True:
        ref = node.get("$ref") or next((s.get("$ref") for s in node.get("allOf", ()) if "$ref" in s), None)
        if not ref:
            return node
        target = definitions()[ref.rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k not in ("$ref", "allOf", "description")}}


def prune_typed(obj: Any, schema: Schema) -> Any:
    """Drop the fields a built-in kind does not have, as decoding into its Go type does."""
    node = schema.node
    if not node or node.get("x-kubernetes-preserve-unknown-fields"):
        return obj
    if isinstance(obj, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is None:
            return {k: prune_typed(v, Schema(extra)) for k, v in obj.items()} if isinstance(extra, dict) else obj
        return {k: prune_typed(v, schema.child(k)) for k, v in obj.items() if k in props}
    if isinstance(obj, list) and node.get("items"):
        items = schema.items()
        return [prune_typed(v, items) for v in obj]
    return obj


def builtin_schema(api_version: str, kind: str) -> Schema:
    name = builtin_definition(api_version, kind)
    return Schema(definitions()[name] if name else None)


# ---- CRD structural schemas ------------------------------------------------------------------
_META_KEEP = {"apiVersion", "kind", "metadata"}


def prune(obj: Any, schema: dict[str, Any] | None, *, root: bool = True) -> Any:
    """Drop the fields the structural schema does not declare (metadata is the server's)."""
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = {}
        for key, value in obj.items():
            if root and key in _META_KEEP:
                out[key] = value
            elif props is not None and key in props:
                out[key] = prune(value, props[key], root=False)
            elif isinstance(extra, dict):
                out[key] = prune(value, extra, root=False)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = value
            elif props is None and extra is None and schema.get("type") != "object":
                out[key] = value
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], root=False) for item in obj]
    return obj


def default(obj: Any, schema: dict[str, Any] | None) -> Any:
    """Fill in the schema's defaults where a field is absent."""
    if not schema:
        return obj
    if isinstance(obj, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key not in obj and "default" in child:
                obj[key] = copy.deepcopy(child["default"])
            if key in obj:
                obj[key] = default(obj[key], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(obj):
                if key not in (schema.get("properties") or {}):
                    obj[key] = default(obj[key], extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [default(item, schema["items"]) for item in obj]
    return obj


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema as JSON Schema draft 4 reads it (int-or-string and nullable spelled out)."""
    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: visit(v) for k, v in node.items() if k not in ("x-kubernetes-validations", "default")}
            if node.get("x-kubernetes-int-or-string"):
                out.pop("type", None)
                out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if node.get("nullable") and isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            if "properties" in node and isinstance(node["properties"], dict):
                out["properties"] = {k: visit(v) for k, v in node["properties"].items()}
            return out
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node
    return visit(schema)


# Validators by the id of the schema they check (kept alive with them): built once per
# CRD version, as the API server does, not per write.
_VALIDATORS: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}


def _validator(schema: dict[str, Any]) -> Draft4Validator:
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        if len(_VALIDATORS) >= 64:
            _VALIDATORS.clear()
        hit = _VALIDATORS[id(schema)] = (schema, Draft4Validator(_json_schema(copy.deepcopy(schema))))
    return hit[1]


def problems(obj: Any, old: Any, schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, reason, message) for each way ``obj`` breaks the schema, then its CEL rules."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    found = []
    for error in _validator(schema).iter_errors(body):
        field = field_path(error.absolute_path)
        if error.validator == "enum":
            found.append((field, "FieldValueNotSupported",
                          "Unsupported value: supported values: " + ", ".join(f'"{v}"' for v in error.validator_value)))
        elif error.validator == "required":
            missing = [n for n in error.validator_value if n not in (error.instance or {})]
            for name in missing:
                found.append((field_path([*error.absolute_path, name]), "FieldValueRequired", "Required value"))
        elif error.validator == "type":
            found.append((field, "FieldValueTypeInvalid", f"Invalid value: must be of type {error.validator_value}"))
        else:
            found.append((field, "FieldValueInvalid", f"Invalid value: violates {error.validator} {error.validator_value}"))
    if found:
        return found
    return [(field, "FieldValueInvalid", f"Invalid value: {message}")
            for field, message in rule_failures(obj, old or None, schema)]
