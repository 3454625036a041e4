"""Patch semantics of the Kubernetes API: JSON merge patch (RFC 7386, also used for
strategic merge patches), JSON patch (RFC 6902) and a simplified server-side apply.

Server-side apply here tracks, per field manager, the configuration it last applied:
fields that a manager applied before and no longer applies are removed, the rest is
merged in, lists are replaced whole. That is what a sole owner of an object sees from a
real API server; conflicts between managers are not modelled (``force`` is implied).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied (422 Unprocessable Entity)."""


class PatchTestFailed(PatchError):
    """A JSON patch ``test`` operation did not hold."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``None`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 operations: add, remove, replace, test, move, copy."""
    doc = copy.deepcopy(target)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise PatchTestFailed(f"test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                src = _pointer(op["from"])
                value = copy.deepcopy(_walk(doc, src))
                if kind == "move":
                    doc = _remove(doc, src)
                doc = _add(doc, parts, value)
            elif kind == "add":
                doc = _add(doc, parts, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                doc = _remove(doc, parts)
            elif kind == "replace":
                _walk(doc, parts)  # must exist
                doc = _remove(doc, parts)
                doc = _add(doc, parts, copy.deepcopy(op.get("value")))
            else:
                raise PatchError(f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, PatchError):
                raise
            raise PatchError(f"cannot {kind} at {op.get('path')}: {exc!r}") from None
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError("cannot add into a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return doc


def _leaf_paths(doc: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if isinstance(doc, dict) and doc:
        out: set[tuple[str, ...]] = set()
        for key, value in doc.items():
            out |= _leaf_paths(value, prefix + (key,))
        return out
    return {prefix}


def _drop(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = doc
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)


def server_side_apply(current: dict[str, Any] | None, applied: dict[str, Any],
                      previously_applied: dict[str, Any] | None) -> dict[str, Any]:
    """The object after ``applied`` is applied by a manager that last applied ``previously_applied``."""
    result = copy.deepcopy(current) if current else {}
    if previously_applied:
        for path in _leaf_paths(previously_applied) - _leaf_paths(applied):
            if path and path[0] != "metadata" or path[:2] in (("metadata", "labels"), ("metadata", "annotations")):
                _drop(result, path)
    return merge_patch(result, _without_nulls(applied))


def _without_nulls(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_nulls(v) for k, v in doc.items() if v is not None}
    return doc
