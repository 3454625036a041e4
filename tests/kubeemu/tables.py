"""``application/json;as=Table`` answers, what ``kubectl get`` prints: a CRD's
``additionalPrinterColumns`` (evaluated with the JSONPath subset they use) or columns
close to kube-apiserver's for the built-in kinds. Knows objects and columns, not storage.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .emulator import Served

_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}
_AGE = {"name": "Age", "type": "string", "format": "", "priority": 0,
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}


def _deployment(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0)]


# Kind -> (extra columns between Name and Age, cells).
_BUILTIN: dict[str, tuple[list[str], Callable[[dict[str, Any]], list[Any]]]] = {
    "Namespace": (["Status"], lambda o: [(o.get("status") or {}).get("phase", "Active")]),
    "Secret": (["Type", "Data"], lambda o: [o.get("type", "Opaque"), len(o.get("data") or {})]),
    "ConfigMap": (["Data"], lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {})]),
    "Deployment": (["Ready", "Up-to-date", "Available"], _deployment),
    "Service": (["Type", "Cluster-IP"], lambda o: [(o.get("spec") or {}).get("type", "ClusterIP"),
                                                  (o.get("spec") or {}).get("clusterIP", "<none>")]),
}


def table(served: "Served", items: list[dict[str, Any]], params: dict[str, str],
          list_meta: dict[str, Any]) -> dict[str, Any]:
    if served.crd:
        extra = [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                  "description": c.get("description", ""), "priority": c.get("priority", 0)}
                 for c in served.columns]
        columns = [_NAME, *extra] if extra else [_NAME, {**_AGE, "type": "date"}]

        def cells(obj: dict[str, Any]) -> list[Any]:
            if not served.columns:
                return [obj["metadata"]["name"], _age(obj["metadata"].get("creationTimestamp"))]
            return [obj["metadata"]["name"], *(_cell(evaluate(c["jsonPath"], obj), c.get("type", "string"))
                                               for c in served.columns)]
    else:
        names, extract = _BUILTIN.get(served.kind, ([], lambda o: []))
        columns = [_NAME, *({"name": n, "type": "string", "format": "", "description": "", "priority": 0}
                            for n in names), _AGE]

        def cells(obj: dict[str, Any]) -> list[Any]:
            return [obj["metadata"]["name"], *extract(obj), _age(obj["metadata"].get("creationTimestamp"))]

    include = params.get("includeObject", "Metadata")
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": cells(obj)}
        if include == "Object":
            row["object"] = obj
        elif include == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {
        k: v for k, v in list_meta.items() if k in ("resourceVersion", "continue")},
        "columnDefinitions": columns, "rows": rows}


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return timestamp
    seconds = int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _cell(values: list[Any], kind: str) -> Any:
    if not values:
        return None
    value = values[0] if len(values) == 1 else ",".join(map(str, values))
    if kind == "date" and isinstance(value, str):
        return _age(value)  # as kube-apiserver converts date columns
    if kind in ("integer", "number") and isinstance(value, (int, float)):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else str(value)


_STEP = re.compile(r"""\.([A-Za-z0-9_$-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.]+)\s*==\s*["']([^"']*)["']\)\]|\[\*\]""")


def evaluate(path: str, obj: Any) -> list[Any]:
    """The values a kubectl-style JSONPath (``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``) selects."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    nodes = [obj]
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return []
        pos = m.end()
        field, index, key, want = m.groups()
        out: list[Any] = []
        for node in nodes:
            if field is not None and isinstance(node, dict) and field in node:
                out.append(node[field])
            elif index is not None and isinstance(node, list) and int(index) < len(node):
                out.append(node[int(index)])
            elif key is not None and isinstance(node, list):
                for item in node:
                    found = evaluate("." + key, item)
                    if found and str(found[0]) == want:
                        out.append(item)
            elif m.group(0) == "[*]" and isinstance(node, list):
                out.extend(node)
        nodes = out
    return nodes
