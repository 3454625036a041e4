"""Patch semantics of the Kubernetes API: JSON merge patch (RFC 7386), JSON patch (RFC
6902), strategic merge patch, and server-side apply with field ownership.

Strategic merge and apply read a ``Schema`` for how lists merge: by their map keys
(containers and env by ``name``, ports by ``containerPort`` and ``protocol``...), as sets,
or whole. Field sets are sets of paths whose elements are written as in ``managedFields``
(``f:name``, ``k:{"name":"c"}``, ``v:"x"``); ``fields_v1`` turns one into that format. This
module knows documents and schemas; it does not store objects or speak HTTP.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable

from .schemas import Schema


def clone(doc: Any) -> Any:
    """A deep copy of a JSON document: dicts and lists are copied, scalars shared. Several
    times faster than ``copy.deepcopy`` (no memo), to which anything else is left."""
    kind = type(doc)
    if kind is dict:
        return {k: clone(v) for k, v in doc.items()}
    if kind is list:
        return [clone(v) for v in doc]
    if kind in _SCALARS:
        return doc
    return copy.deepcopy(doc)


_SCALARS = frozenset({str, int, float, bool, type(None)})


class PatchError(ValueError):
    """The patch cannot be applied (422 Unprocessable Entity)."""


class PatchTestFailed(PatchError):
    """A JSON patch ``test`` operation did not hold."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``None`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
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
    doc = clone(target)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise PatchTestFailed(f"test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                src = _pointer(op["from"])
                value = clone(_walk(doc, src))
                if kind == "move":
                    doc = _remove(doc, src)
                doc = _add(doc, parts, value)
            elif kind == "add":
                doc = _add(doc, parts, clone(op.get("value")))
            elif kind == "remove":
                doc = _remove(doc, parts)
            elif kind == "replace":
                _walk(doc, parts)  # must exist
                doc = _remove(doc, parts)
                doc = _add(doc, parts, clone(op.get("value")))
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


# ---- strategic merge patch -------------------------------------------------------------------
def strategic_merge_patch(target: Any, patch: Any, schema: Schema) -> Any:
    """Kubernetes' strategic merge patch: lists with a merge strategy merge by their key."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        child = schema.child(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and "merge" in child.patch_strategy():
            result[key] = _merge_list(result.get(key), value, child)
        elif isinstance(value, dict) and not child.atomic_map():
            merged = strategic_merge_patch(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    return result


def _merge_list(current: Any, patch: list[Any], schema: Schema) -> list[Any]:
    current = clone(current) if isinstance(current, list) else []
    merge_key = schema.patch_merge_key()
    if not merge_key:  # a list of primitives with the merge strategy is a set
        return current + [v for v in patch if v not in current]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"a list merged by {merge_key} holds objects only")
        if item.get("$patch") == "replace":
            return [{k: v for k, v in i.items() if k != "$patch"} for i in patch if i.get("$patch") != "replace"]
        at = next((i for i, have in enumerate(current) if isinstance(have, dict)
                   and have.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del current[at]
        elif at is None:
            current.append(strategic_merge_patch({}, item, schema.items()))
        else:
            current[at] = strategic_merge_patch(current[at], item, schema.items())
    return current


# ---- field sets and server-side apply ------------------------------------------------------
Path = tuple[str, ...]
# What no manager owns: the server's own metadata.
_UNOWNED = {("f:apiVersion",), ("f:kind",)} | {("f:metadata", f"f:{f}") for f in (
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink")}


def _item_key(item: Any, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys if k in item}, sort_keys=True, separators=(",", ":"))


def field_set(obj: Any, schema: Schema, prefix: Path = ()) -> set[Path]:
    """The paths a manager owns when it sets ``obj``: leaves, list items by key, set members."""
    if _is_map(obj, schema):
        out: set[Path] = set()
        for key, value in obj.items():
            path = prefix + (f"f:{key}",)
            if path not in _UNOWNED:
                out |= _value_set(value, schema.child(key), path)
        return out
    return {prefix}


def _is_map(value: Any, schema: Schema) -> bool:
    """Whether ``value`` is owned field by field (a non-empty map that is not atomic)."""
    return isinstance(value, dict) and bool(value) and not schema.atomic_map()


def _value_set(value: Any, schema: Schema, path: Path) -> set[Path]:
    """The paths owned by setting the field at ``path`` to ``value``."""
    if isinstance(value, list) and value and schema.list_type() in ("map", "set"):
        return _list_set(value, schema, path)
    if _is_map(value, schema):
        return field_set(value, schema, path)
    return {path}


def _list_set(items: list[Any], schema: Schema, path: Path) -> set[Path]:
    out: set[Path] = set()
    keys = schema.map_keys()
    for item in items:
        if keys and isinstance(item, dict):
            item_path = path + (_item_key(item, keys),)
            out.add(item_path)
            out |= field_set(item, schema.items(), item_path)
        else:
            out.add(path + ("v:" + json.dumps(item, sort_keys=True, separators=(",", ":")),))
    return out


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    for part in path:
        kind, _, name = part.partition(":")
        if kind == "f" and isinstance(node, dict) and name in node:
            node = node[name]
        elif kind == "k" and isinstance(node, list):
            want = json.loads(name)
            node = next((i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())),
                        _MISSING)
            if node is _MISSING:
                return False, None
        elif kind == "v" and isinstance(node, list):
            value = json.loads(name)
            if value not in node:
                return False, None
            node = value
        else:
            return False, None
    return True, node


_MISSING = object()


def remove_at(obj: Any, path: Path) -> None:
    found, parent = value_at(obj, path[:-1])
    if not found:
        return
    kind, _, name = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == "k" and isinstance(parent, list):
        want = json.loads(name)
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]
    elif kind == "v" and isinstance(parent, list):
        value = json.loads(name)
        parent[:] = [i for i in parent if i != value]


def changed_paths(old: Any, new: Any, schema: Schema) -> tuple[set[Path], set[Path]]:
    """(set or changed, removed) paths between two versions of an object. Fields equal in
    both are skipped whole: a status write does not walk the spec."""
    if not (_is_map(old, schema) and _is_map(new, schema)):
        old_set, new_set = field_set(old, schema), field_set(new, schema)
        return {p for p in new_set if p not in old_set or value_at(old, p) != value_at(new, p)}, old_set - new_set
    changed: set[Path] = set()
    removed: set[Path] = set()

    def diff(before: dict[str, Any], after: dict[str, Any], node: Schema, prefix: Path) -> None:
        for key in {**before, **after}:
            path = prefix + (f"f:{key}",)
            if path in _UNOWNED or (key in before and key in after and before[key] == after[key]):
                continue
            child = node.child(key)
            if key in before and key in after and _is_map(before[key], child) and _is_map(after[key], child):
                diff(before[key], after[key], child, path)
                continue
            old_set = _value_set(before[key], child, path) if key in before else set()
            new_set = _value_set(after[key], child, path) if key in after else set()
            changed.update(p for p in new_set if p not in old_set or value_at(old, p) != value_at(new, p))
            removed.update(old_set - new_set)

    diff(old, new, schema, ())
    return changed, removed


def apply_merge(current: Any, config: Any, schema: Schema) -> Any:
    """Merge an apply configuration into the live object, lists by their map keys."""
    if not isinstance(config, dict) or not isinstance(current, dict) or schema.atomic_map():
        return clone(config)
    result = clone(current)
    for key, value in config.items():
        if value is None:
            continue
        child = schema.child(key)
        if isinstance(value, list) and isinstance(result.get(key), list) and child.list_type() in ("map", "set"):
            keys = child.map_keys()
            merged = clone(result[key])
            for item in value:
                if keys and isinstance(item, dict):
                    ident = _item_key(item, keys)
                    at = next((i for i, have in enumerate(merged)
                               if isinstance(have, dict) and _item_key(have, keys) == ident), None)
                    if at is None:
                        merged.append(clone(item))
                    else:
                        merged[at] = apply_merge(merged[at], item, child.items())
                elif item not in merged:
                    merged.append(clone(item))
            result[key] = merged
        else:
            result[key] = apply_merge(result.get(key), value, child)
    return result


def conflicts(current: Any, config: Any, mine: set[Path], others: dict[Any, set[Path]]) -> dict[Any, set[Path]]:
    """The fields of ``config`` that other managers own with a different value in ``current``."""
    found: dict[Any, set[Path]] = {}
    for manager, owned in others.items():
        for path in mine & owned:
            if path[-1].startswith("k:"):
                continue  # a list item is shared; its fields may conflict
            if value_at(current, path) != value_at(config, path):
                found.setdefault(manager, set()).add(path)
    return found


def remove_unowned(obj: Any, dropped: Iterable[Path], owned_by_others: set[Path]) -> None:
    """Remove the fields a manager stopped applying unless another manager owns them (or under them)."""
    for path in sorted(dropped, key=len, reverse=True):
        if any(p[:len(path)] == path for p in owned_by_others):
            continue
        remove_at(obj, path)


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set in ``managedFields``' FieldsV1 format."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        if path and path[-1].startswith("k:"):
            node["."] = {}
    return tree


def dotted(path: Path) -> str:
    """A path as conflict messages show it: ``.spec.template.spec.containers[name="c"].image``."""
    out = ""
    for part in path:
        kind, _, name = part.partition(":")
        if kind == "f":
            out += f".{name}"
        elif kind == "k":
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(name).items()) + "]"
        else:
            out += f"[={name}]"
    return out
