"""Pydantic JSON Schema turned into a Kubernetes *structural* OpenAPI v3 schema.

Kubernetes accepts a subset of OpenAPI v3 in a CRD: every node has a ``type`` (or is
marked ``x-kubernetes-int-or-string`` / ``x-kubernetes-preserve-unknown-fields``), no
``$ref``, no ``additionalProperties: false``, no ``default`` that would rewrite what the
user wrote. This module does that translation and merges the schemas of several models
into one (the union of their properties) for fields whose shape depends on the service.

It knows nothing of services or of the CRD's layout; ``crd`` does.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

SECRET_MARK = "x-kubeinfer-secret"
# Keys of JSON Schema that a structural schema keeps as they are.
_KEPT = ("description", "enum", "format", "pattern", "minLength", "maxLength", "minItems", "maxItems",
         "minimum", "maximum", "maxProperties", "required")
_FORMATS = {"date-time", "int32", "int64", "byte", "date"}


def model_schema(model: type[BaseModel], *, by_alias: bool = True) -> dict[str, Any]:
    """The structural schema of a pydantic model (validation mode, aliases as on the wire)."""
    raw = model.model_json_schema(by_alias=by_alias, mode="validation")
    return to_structural(raw, raw.get("$defs", {}))


def to_structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    secret = bool(node.get(SECRET_MARK))
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        branches = [_resolve(b, defs) for b in branches if b.get("type") != "null"]
        if secret:
            # A CR holds a secret only as a reference: the plain-string form is not offered.
            branches = [b for b in branches if b.get("type") == "object"]
        types = {b.get("type") for b in branches}
        if types == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        elif len(branches) == 1:
            out = to_structural({**branches[0], **_outer(node)}, defs)
        else:
            out = {"x-kubernetes-preserve-unknown-fields": True}
        return _with_secret_rule(out) if secret else out

    out: dict[str, Any] = {}
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        out["type"] = "object"
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {k: to_structural(v, defs) for k, v in props.items()}
        elif isinstance(extra, dict) and extra:
            if secret:
                # A map of secrets: each value is a secret, the map itself is not.
                extra, secret = {**extra, SECRET_MARK: True}, False
            out["additionalProperties"] = to_structural(extra, defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["type"] = "array"
        out["items"] = to_structural(node.get("items") or {}, defs)
    elif kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
    else:
        out["x-kubernetes-preserve-unknown-fields"] = True

    for key in _KEPT:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if out.get("format") not in _FORMATS:
        out.pop("format", None)
    if "exclusiveMinimum" in node:  # draft 2020-12 number -> OpenAPI 3.0
        bound = node["exclusiveMinimum"]
        if kind == "integer":
            out["minimum"] = bound + 1
        else:
            out["minimum"], out["exclusiveMinimum"] = bound, True
    if "exclusiveMaximum" in node:
        bound = node["exclusiveMaximum"]
        if kind == "integer":
            out["maximum"] = bound - 1
        else:
            out["maximum"], out["exclusiveMaximum"] = bound, True
    if "enum" in out and kind == "string":
        # A bound on length keeps the cost of CEL rules that compare the value small.
        out["maxLength"] = max(len(v) for v in out["enum"])
    return _with_secret_rule(out) if secret else out


def _outer(node: dict[str, Any]) -> dict[str, Any]:
    """What a field says about itself beside its anyOf (its description)."""
    return {k: v for k, v in node.items() if k == "description"}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[name], **rest}
    return node


SECRET_RULE = {
    "rule": "has(self.secretKeyRef)",
    "message": "secrets are given as {secretKeyRef: {name, key}}, never in plain text",
}


def _with_secret_rule(schema: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    schema["description"] = (
        (schema.get("description", "").rstrip(".") + ". " if schema.get("description") else "")
        + "A reference to a key of a Secret: {secretKeyRef: {name, key}}."
    )
    # The rule, not `required`, rejects a reference without its key, with a clear message.
    schema.pop("required", None)
    schema["x-kubernetes-validations"] = [dict(SECRET_RULE)]
    return schema


def merge(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One object schema accepting every property of ``schemas`` (required: none).

    A property defined alike everywhere keeps its definition; enums are united; an
    integer here and a number there is a number; bounds that differ are dropped (the
    narrower per-service checks are CEL rules and the catalog's own validation).
    """
    props: dict[str, dict[str, Any]] = {}
    for schema in schemas:
        for name, prop in (schema.get("properties") or {}).items():
            props[name] = _merge_property(props[name], prop) if name in props else copy.deepcopy(prop)
    return {"type": "object", "properties": dict(sorted(props.items()))}


def _merge_property(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if a == b:
        return a
    if a.get("type") == "object" and b.get("type") == "object" and "properties" in a and "properties" in b:
        merged = merge([a, b])
        for key in ("x-kubernetes-validations", "description"):
            if a.get(key) == b.get(key) and key in a:
                merged[key] = a[key]
        if "description" not in merged and merged.get("x-kubernetes-validations") == [SECRET_RULE]:
            merged["description"] = "A secret setting: a reference to a key of a Secret, {secretKeyRef: {name, key}}."
        return merged
    types = {a.get("type"), b.get("type")}
    out: dict[str, Any] = {}
    if types == {"integer", "number"}:
        out["type"] = "number"
    elif len(types) == 1 and None not in types:
        out["type"] = a["type"]
    else:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if "enum" in a and "enum" in b:
        out["enum"] = sorted(set(a["enum"]) | set(b["enum"]))
        out["maxLength"] = max(len(v) for v in out["enum"])
    for key in ("minimum", "maximum", "minLength", "maxLength", "pattern", "description"):
        if key not in out and key in a and a.get(key) == b.get(key):
            out[key] = a[key]
    return out
