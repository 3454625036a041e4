"""A ValidatingAdmissionPolicy evaluated offline, as kube-apiserver's admission plugin
evaluates it, with the project's CEL evaluator (``kubeinfer.cel``: cel-python and the
Kubernetes library functions the API server has).

``denials(policy, params, obj)`` runs the policy's match conditions, then its variables
in order, then each validation, and returns the message of every validation that denies
(its ``messageExpression``, else its ``message``). An expression that cannot be
evaluated denies too, as under ``failurePolicy: Fail``. Matching by resource, bindings
and the parameter's lookup are the caller's. It evaluates; it asserts nothing.
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy import celtypes

from kubeinfer.cel import evaluate


def _run(expression: str, bindings: dict[str, Any]) -> Any:
    try:
        return evaluate(expression, **bindings)
    except celpy.CELEvalError as exc:
        return exc


def denials(policy: dict[str, Any], params: dict[str, Any] | None, obj: dict[str, Any],
            old: dict[str, Any] | None = None, operation: str = "CREATE") -> list[str]:
    spec = policy["spec"]
    meta = obj.get("metadata") or {}
    bindings: dict[str, Any] = {
        "object": obj, "oldObject": old, "params": params,
        "request": {"operation": operation, "namespace": meta.get("namespace", ""), "name": meta.get("name", "")},
    }
    for condition in spec.get("matchConditions") or []:
        matched = _run(condition["expression"], bindings)
        if isinstance(matched, celpy.CELEvalError):
            return [f"matchCondition {condition['name']}: {matched.args[0]}"]
        if not matched:
            return []
    variables = celtypes.MapType()
    bindings["variables"] = variables
    for variable in spec.get("variables") or []:
        # Kubernetes evaluates a variable when first used; an error only matters there.
        variables[celtypes.StringType(variable["name"])] = _run(variable["expression"], bindings)
    out = []
    for validation in spec.get("validations") or []:
        ok = _run(validation["expression"], bindings)
        if isinstance(ok, celpy.CELEvalError):
            out.append(f"expression '{validation['expression']}' resulted in error: {ok.args[0]}")
        elif not ok:
            message = _run(validation["messageExpression"], bindings) if "messageExpression" in validation else None
            if not isinstance(message, str) or not message.strip() or "\n" in message:
                message = validation.get("message") or f"failed expression: {validation['expression']}"
            out.append(message.strip())
    return out
