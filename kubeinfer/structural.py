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
import re
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
            values = to_structural(extra, defs)
            if cel_typed(values):
                out["additionalProperties"] = values
            else:
                # Values of several types: kept as they are. A map of untyped values would have
                # no type in CEL, and a rule that reads the field would not compile.
                out["x-kubernetes-preserve-unknown-fields"] = True
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


# ---- what Kubernetes' CEL can see of a structural schema ----------------------------------------

_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
# A chain of field reads from self, up to a method call (``.size()``, ``.all(...)``).
_FIELD_CHAIN = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\s*\()?")
_RESOURCE_ROOT_FIELDS = {"apiVersion", "kind", "metadata"}


def cel_typed(schema: dict[str, Any]) -> bool:
    """Whether the API server gives ``schema`` a type in CEL (apiserver's ``SchemaDeclType``).

    A node with no type, only ``x-kubernetes-preserve-unknown-fields``, gets none, nor does
    an array or a map of such nodes: a property like that is left out of its object's CEL
    type, and a rule that reads it does not compile.
    """
    if schema.get("x-kubernetes-int-or-string"):
        return True
    kind = schema.get("type")
    if kind == "array":
        return bool(schema.get("items")) and cel_typed(schema["items"])
    if kind == "object":
        extra = schema.get("additionalProperties")
        return cel_typed(extra) if isinstance(extra, dict) else True
    return kind in ("string", "integer", "number", "boolean")


def cel_undefined_fields(schema: dict[str, Any], path: str = "", *, root: bool = True) -> list[tuple[str, str]]:
    """Fields that the ``x-kubernetes-validations`` rules of ``schema`` read but that CEL
    cannot type, as ``(path of the rule, field)``: the API server refuses such a CRD with
    ``compilation failed: ... undefined field``."""
    found: list[tuple[str, str]] = []
    for rule in schema.get("x-kubernetes-validations", ()):
        for text in (rule.get("rule", ""), rule.get("messageExpression", "")):
            for chain in _FIELD_CHAIN.finditer(_STRINGS.sub("''", text)):
                names = chain.group(1).split(".")[1:]
                if chain.group(2):
                    names.pop()  # the last is a method (size, all, matches...), not a field
                node, is_root = schema, root
                for name in names:
                    if is_root and name in _RESOURCE_ROOT_FIELDS:
                        break
                    if node.get("x-kubernetes-int-or-string") or isinstance(node.get("additionalProperties"), dict):
                        break  # a map's keys, or a dynamic value: read at run time
                    child = (node.get("properties") or {}).get(name)
                    if child is None or not cel_typed(child):
                        if (path or ".", name) not in found:
                            found.append((path or ".", name))
                        break
                    node, is_root = child, False
    for name, child in (schema.get("properties") or {}).items():
        found += cel_undefined_fields(child, f"{path}.{name}", root=False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += cel_undefined_fields(schema[key], f"{path}[*]", root=False)
    return found


def any_case_enums(node: Any) -> Any:
    """A copy of a schema whose string enums take any letter case, as Elasticsearch reads
    its enum settings: a case-insensitive pattern (RE2) in place of each enum, its values
    named in the description. The operator's catalog then reads the value as its own."""
    if isinstance(node, list):
        return [any_case_enums(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: any_case_enums(value) for key, value in node.items()}
    if out.get("type") == "string" and "enum" in out:
        values = out.pop("enum")
        out["pattern"] = "^(?i:" + "|".join(re.escape(v) for v in values) + ")$"
        described = out.get("description", "").rstrip()
        out["description"] = f"{described} One of: {', '.join(values)} (any letter case).".strip()
    return out
