"""A structural schema's CEL rules (``x-kubernetes-validations``) run over an object, as
kube-apiserver runs them on a write: each rule on the value at its place in the schema,
``oldSelf`` bound to the stored value at the same place on an update, transition rules
(those reading ``oldSelf``) skipped on a create, an unchanged value not checked again
(validation ratcheting), and rules at the root seeing of ``metadata`` only ``name`` and
``generateName``.

``rule_failures`` answers ``(field, message)`` pairs in the API server's field syntax
(``spec.settings[key]``, ``spec.items[0]``; ``""`` for the root); messages never quote a
value. Both the offline admission check (``admission``) and the API emulator of the tests
run rules through it. It knows CEL's Kubernetes functions through ``cel``, and no
schema's rules of its own.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Iterator

from . import cel

Failure = tuple[str, str]


def evaluate(expression: str, self_value: Any, old_value: Any = None) -> Any:
    """Evaluate a CEL expression with ``self`` (and ``oldSelf``) bound as Kubernetes binds them."""
    if old_value is None:
        return cel.evaluate(expression, self=self_value)
    return cel.evaluate(expression, self=self_value, oldSelf=old_value)


def field_path(parts: Any) -> str:
    """A field's path as the API server writes it, from its names and indexes (``""`` for the root)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def rule_failures(obj: Any, old: Any, schema: dict[str, Any]) -> list[Failure]:
    """The rules of ``schema`` that ``obj`` breaks; ``old`` is the stored object on an update."""
    return list(_walk(_visible(obj), _visible(old) if old is not None else None, schema, ""))


def _visible(obj: Any) -> Any:
    """What a rule at the root sees of an object: of its metadata, the name alone."""
    if not isinstance(obj, dict) or "metadata" not in obj:
        return obj
    metadata = obj.get("metadata") or {}
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k in ("name", "generateName")}}


_MATCHES_TYPE = {"object": dict, "array": list, "string": str}

# Rules generated per service open with this guard; for a spec of another service the
# guard is true, and so is the rule (CEL's || is true when either side is): it is not
# evaluated. cel-python is slow, and a folder may hold hundreds of manifests.
_SERVICE_GUARD = re.compile(r"^self\.service != '([^']+)' \|\| ")


def _walk(value: Any, old: Any, schema: dict[str, Any], path: str) -> Iterator[Failure]:
    expected = _MATCHES_TYPE.get(schema.get("type"))
    if expected is not None and not isinstance(value, expected):
        return  # the schema check reports it; Kubernetes runs no rule on a mistyped value
    if old is not None and value == old:
        return  # validation ratcheting: an unchanged value is not checked again
    for rule in schema.get("x-kubernetes-validations", ()):
        expression = rule["rule"]
        if "oldSelf" in expression and old is None:
            continue  # a transition rule: only on update
        guard = _SERVICE_GUARD.match(expression)
        if guard and isinstance(value, dict) and value.get("service") != guard.group(1):
            continue
        ok = _holds(expression, json.dumps(_read_by(expression, value), sort_keys=True, default=str),
                    json.dumps(_read_by(expression, old), sort_keys=True, default=str))
        if isinstance(ok, str):
            yield path, f"rule [{expression}] could not be evaluated: {ok}"
        elif not ok:
            yield path, _message(rule, value, old)
    if isinstance(value, dict):
        props = schema.get("properties")
        if props:
            for name, child in props.items():
                if name in value:
                    old_child = old.get(name) if isinstance(old, dict) else None
                    yield from _walk(value[name], old_child, child, f"{path}.{name}" if path else name)
        elif isinstance(schema.get("additionalProperties"), dict):
            for name, item in value.items():
                old_item = old.get(name) if isinstance(old, dict) else None
                yield from _walk(item, old_item, schema["additionalProperties"], f"{path}[{name}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _walk(item, None, schema["items"], f"{path}[{i}]")


@functools.lru_cache(maxsize=8192)
def _holds(expression: str, value: str, old: str) -> bool | str:
    """Whether a rule holds (CEL is pure, so answers are kept); a string says why it could not run."""
    try:
        ok = evaluate(expression, json.loads(value), json.loads(old))
    except Exception as exc:  # cel-python raises its own errors for a rule it cannot evaluate
        return _reason(exc)
    return _reason(ok) if isinstance(ok, Exception) else bool(ok)


def _reason(error: Exception) -> str:
    return str(error.args[0] if error.args else error)


def _message(rule: dict[str, str], value: Any, old: Any) -> str:
    """The rule's ``messageExpression`` where it evaluates to a string, else its ``message``."""
    if "messageExpression" in rule:
        try:
            message = evaluate(rule["messageExpression"], value, old)
        except Exception:  # noqa: BLE001 - the API server falls back to the message, as here
            message = None
        if isinstance(message, str) and message:
            return str(message)
    return rule.get("message") or f"failed rule: {rule['rule']}"


# A rule reading ``self`` (or ``oldSelf``) only through named fields: ``self.spec.x``, not
# ``self`` whole, ``self[...]`` or a method of ``self``.
_FIELD_READ = re.compile(r"\b(self|oldSelf)\b(\.[A-Za-z_][A-Za-z0-9_]*)?(\s*\()?")


@functools.lru_cache(maxsize=None)
def _fields_read(expression: str) -> frozenset[str] | None:
    """The top-level fields of ``self`` and ``oldSelf`` a rule reads; ``None`` when it may
    read more. Like the API server, which converts values to CEL lazily, a rule then costs
    what it reads, not the size of the whole object (a status write does not convert the
    status for a rule about the spec)."""
    names = set()
    for match in _FIELD_READ.finditer(expression):
        if match.group(2) is None or match.group(3):
            return None
        names.add(match.group(2)[1:])
    return frozenset(names)


def _read_by(expression: str, value: Any) -> Any:
    fields = _fields_read(expression)
    if fields is None or not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k in fields}
