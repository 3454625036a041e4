"""ValidatingAdmissionPolicies evaluated as kube-apiserver's admission plugin evaluates
them, with the project's CEL evaluator (``kubeinfer.cel``: cel-python and the Kubernetes
library functions the API server has).

``refusals(policy, params, obj)`` runs one policy's match conditions, then its variables
in order, then each validation, and returns every validation that denies: its message
(``messageExpression``, else ``message``) and reason; an expression that cannot be
evaluated denies, as under ``failurePolicy: Fail``. ``matches`` says whether a policy's
``matchConstraints`` and a binding's ``matchResources`` cover a request. The emulator
runs both on every create and update; tests call ``denials`` (the messages) directly too.
"""

from __future__ import annotations

from typing import Any, Mapping

import celpy
from celpy import celtypes

from kubeinfer.cel import evaluate

POLICIES = "admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


def _run(expression: str, bindings: dict[str, Any]) -> Any:
    try:
        return evaluate(expression, **bindings)
    except celpy.CELEvalError as exc:
        return exc


def refusals(policy: Mapping[str, Any], params: Mapping[str, Any] | None, obj: Mapping[str, Any],
             old: Mapping[str, Any] | None = None, operation: str = "CREATE") -> list[tuple[str, str]]:
    """(message, Status reason) of every validation of ``policy`` that denies the request."""
    spec = policy["spec"]
    meta = obj.get("metadata") or {}
    bindings: dict[str, Any] = {
        "object": obj, "oldObject": old, "params": params,
        "request": {"operation": operation, "namespace": meta.get("namespace", ""), "name": meta.get("name", "")},
    }
    for condition in spec.get("matchConditions") or []:
        matched = _run(condition["expression"], bindings)
        if isinstance(matched, celpy.CELEvalError):
            return [(f"matchCondition {condition['name']}: {matched.args[0]}", "Invalid")]
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
            out.append((f"expression '{validation['expression']}' resulted in error: {ok.args[0]}", "Invalid"))
        elif not ok:
            message = _run(validation["messageExpression"], bindings) if "messageExpression" in validation else None
            if not isinstance(message, str) or not message.strip() or "\n" in message:
                message = validation.get("message") or f"failed expression: {validation['expression']}"
            out.append((message.strip(), validation.get("reason") or "Invalid"))
    return out


def denials(policy: Mapping[str, Any], params: Mapping[str, Any] | None, obj: Mapping[str, Any],
            old: Mapping[str, Any] | None = None, operation: str = "CREATE") -> list[str]:
    """The messages of ``refusals``."""
    return [message for message, _ in refusals(policy, params, obj, old, operation)]


def _covers(values: list[str] | None, value: str) -> bool:
    return bool(values) and ("*" in values or value in values)


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def matches(policy: Mapping[str, Any], binding: Mapping[str, Any], resource: str, operation: str,
            namespace_labels: Mapping[str, str] | None) -> bool:
    """Whether the request (``resource`` as ``group/version/plural``) is the policy's and
    the binding's; ``namespace_labels`` are those of the object's namespace, if any."""
    group_version, _, plural = resource.rpartition("/")
    group, _, version = group_version.rpartition("/")
    rules = ((policy["spec"].get("matchConstraints") or {}).get("resourceRules")) or []
    if not any(_covers(r.get("apiGroups"), group) and _covers(r.get("apiVersions"), version)
               and _covers(r.get("resources"), plural) and _covers(r.get("operations"), operation) for r in rules):
        return False
    selector = (binding["spec"].get("matchResources") or {}).get("namespaceSelector")
    return namespace_labels is None or _selects(selector, namespace_labels)
