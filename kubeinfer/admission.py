"""What the Kubernetes API server checks when an InferenceEndpoint is applied, done
offline: the CRD's OpenAPI schema with unknown fields rejected (as ``kubectl apply``'s
strict field validation does), then its CEL rules (``x-kubernetes-validations``), run
as the API server runs them (``cel_rules``), transition rules included when the old
object is given.

Problems are ``(path, message)`` pairs; messages never quote a value, so that a secret
written in the wrong place is not echoed back. They say a pattern's rule in words, and
name the closest known field or value where a name looks misspelled.
"""

from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from .cel_rules import field_path, rule_failures
from .catalog._base import SECRET_KEY_PATTERN, SECRET_NAME_PATTERN
from .catalog.endpoint import INFERENCE_ID_PATTERN
from .crd import build_crd

Problem = tuple[str, str]


@lru_cache(maxsize=1)
def openapi_schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a structural schema that rejects fields it does not declare."""
    schema = copy.deepcopy(schema)

    def visit(node: dict[str, Any]) -> None:
        if "properties" in node:
            if not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for child in node["properties"].values():
                visit(child)
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"])
        if isinstance(node.get("items"), dict):
            visit(node["items"])

    visit(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft4Validator:
    return Draft4Validator(strict(openapi_schema()))


def _path(parts: Any) -> str:
    return field_path(parts) or "<root>"


# The CRD's patterns, each said in words: a regular expression is no message for a user.
PATTERN_RULES: dict[str, str] = {
    INFERENCE_ID_PATTERN: "must be 1 to 253 lowercase letters, digits, '-', '_' or '.', starting and ending "
                          "with a letter or digit (ids starting with '.' are Elasticsearch's preconfigured "
                          "endpoints')",
    SECRET_NAME_PATTERN: "must be a Secret's name: lowercase letters, digits, '-' and '.', starting and "
                         "ending with a letter or digit",
    SECRET_KEY_PATTERN: "must be a key of a Secret: letters, digits, '-', '_' and '.', neither '.' nor '..' "
                        "and not starting with '..'",
}


def did_you_mean(word: object, known: Any) -> str:
    """`` (did you mean X?)`` when ``word`` is close to one of ``known``, else nothing."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _describe(error: ValidationError) -> str:
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        return f"must be of type {expected}"
    if kind == "enum":
        # The suggestion comes from the schema, never from the value, which is not echoed.
        allowed = "must be one of [" + ", ".join(map(str, expected)) + "]"
        suggestion = did_you_mean(error.instance, expected)
        return f"unknown value{suggestion}: {allowed}" if suggestion else allowed
    if kind == "required":
        missing = [name for name in expected if name not in (error.instance or {})]
        return "required field missing: " + ", ".join(missing)
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = sorted(set(error.instance) - set(known))
        return "unknown field: " + ", ".join(name + did_you_mean(name, known) for name in extra)
    if kind == "pattern":
        return PATTERN_RULES.get(expected, f"must match the pattern {expected}")
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return f"must be {bound} {expected}"
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        return f"violates {kind} {expected}"
    return f"fails the schema's [{kind}] check"


def _schema_errors(obj: Any) -> list[ValidationError]:
    return sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))


def schema_problems(obj: Any) -> list[Problem]:
    return [(_path(error.absolute_path), _describe(error)) for error in _schema_errors(obj)]


def _without_unknown_fields(obj: Any, errors: list[ValidationError]) -> Any:
    """A copy of ``obj`` without the fields its schema errors name as unknown."""
    obj = copy.deepcopy(obj)
    for error in errors:
        node = obj
        for part in error.absolute_path:
            node = node[part]
        for name in set(node) - set(error.schema.get("properties", {})):
            del node[name]
    return obj


def rule_problems(obj: Any, old: Any = None) -> list[Problem]:
    """Problems found by the CEL rules; ``old`` is the stored object on an update."""
    return [(path or "<root>", message) for path, message in rule_failures(obj, old, openapi_schema())]


def admission_problems(obj: Any, old: Any = None) -> list[Problem]:
    """The schema's problems, then the rules'. The rules run only where the schema's
    problems are all unknown fields, and then without those fields: so one mistake is
    reported once, rules never see values of the wrong type, and a misspelled field does
    not hide a rule's problem elsewhere in the document."""
    errors = _schema_errors(obj)
    problems = [(_path(error.absolute_path), _describe(error)) for error in errors]
    if all(error.validator == "additionalProperties" for error in errors):
        problems += rule_problems(_without_unknown_fields(obj, errors) if errors else obj, old)
    return problems
