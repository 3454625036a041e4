"""What a client learns about the emulator before it asks for objects: API discovery
(``/api``, ``/apis`` and each group-version's resources, with short names, categories and
verbs) and the OpenAPI v2 and v3 documents kubectl validates and explains with.

Built-in kinds are described by Kubernetes' own published definitions; served CRDs by
their ``openAPIV3Schema``. This module reads the emulator's declarations; it stores nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from . import schemas

if TYPE_CHECKING:
    from .emulator import KubeEmulator, Served

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"]}


def _split(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", parts[0], parts[1])


def _group_versions(emulator: "KubeEmulator") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in emulator.served_resources():
        group, version, _ = _split(key)
        if version not in out.setdefault(group, []):
            out[group].append(version)
    return out


def answer(emulator: "KubeEmulator", path: str) -> dict[str, Any] | None:
    """The document served at ``path``, or None when the path is not a discovery one."""
    path = path.rstrip("/") or "/"
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(g, vs) for g, vs in sorted(_group_versions(emulator).items()) if g]}
    if path == "/api/v1":
        return _resource_list(emulator, "", "v1")
    match = re.fullmatch(r"/apis/([^/]+)(?:/([^/]+))?", path)
    if match:
        group, version = match.groups()
        versions = _group_versions(emulator).get(group)
        if not versions or (version and version not in versions):
            return None
        return _resource_list(emulator, group, version) if version else {"apiVersion": "v1", **_group(group, versions),
                                                                           "kind": "APIGroup"}
    if path == "/openapi/v2":
        return openapi_v2(emulator)
    if path == "/openapi/v3":
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(openapi_v3(emulator, gv))}"}
                          for gv in _gv_paths(emulator)}}
    match = re.fullmatch(r"/openapi/v3/(.+)", path)
    if match and match.group(1) in _gv_paths(emulator):
        return openapi_v3(emulator, match.group(1))
    return None


def _group(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def _resource_list(emulator: "KubeEmulator", group: str, version: str) -> dict[str, Any]:
    resources = []
    for key, served in emulator.served_resources().items():
        g, v, plural = _split(key)
        if (g, v) != (group, version):
            continue
        info = emulator.info(key)
        resources.append({
            "name": plural, "singularName": info.singular if info else served.kind.lower(),
            "namespaced": served.namespaced, "kind": served.kind, "verbs": sorted(info.verbs) if info else [],
            "shortNames": sorted(info.shortnames) if info else [], "categories": sorted(info.categories) if info else [],
            "storageVersionHash": hashlib.sha256(key.encode()).hexdigest()[:12],
        })
        for sub in served.subresources:
            resources.append({"name": f"{plural}/{sub}", "singularName": "", "namespaced": served.namespaced,
                              "kind": "Scale" if sub == "scale" else served.kind,
                              "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"])})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


# ---- OpenAPI ------------------------------------------------------------------------------
def _gv_paths(emulator: "KubeEmulator") -> list[str]:
    return sorted(f"apis/{g}/{v}" if g else f"api/{v}" for g, vs in _group_versions(emulator).items() for v in vs)


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()


def _convert(node: Any, ref_prefix: str, refs: set[str]) -> Any:
    """A definition from the JSON Schema form (``$defs``, nullable type lists) to OpenAPI's."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                name = v.rsplit("/", 1)[-1]
                refs.add(name)
                out[k] = ref_prefix + name
            elif k == "type" and isinstance(v, list):
                kinds = [t for t in v if t != "null"]
                if kinds:
                    out[k] = kinds[0]
            else:
                out[k] = _convert(v, ref_prefix, refs)
        return out
    if isinstance(node, list):
        return [_convert(v, ref_prefix, refs) for v in node]
    return node


@functools.lru_cache(maxsize=256)
def _closure(names: tuple[str, ...], ref_prefix: str) -> str:
    defs = schemas.definitions()
    out: dict[str, Any] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out or name not in defs:
            continue
        refs: set[str] = set()
        out[name] = _convert(defs[name], ref_prefix, refs)
        todo.extend(refs - set(out))
    return json.dumps(out)


def _crd_definition(group: str, version: str, served: "Served", ref_prefix: str) -> dict[str, Any]:
    schema = json.loads(json.dumps(served.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}))
    props = schema.setdefault("properties", {})
    props["metadata"] = {"$ref": ref_prefix + _OBJECT_META, "description": "Standard object's metadata."}
    props.setdefault("apiVersion", {"type": "string", "description": "APIVersion defines the versioned schema of "
                                                                     "this representation of an object."})
    props.setdefault("kind", {"type": "string", "description": "Kind is a string value representing the REST "
                                                               "resource this object represents."})
    schema["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": served.kind}]
    return schema


def _definition_name(group: str, version: str, kind: str) -> str:
    reverse = ".".join(reversed(group.split("."))) if group else "core"
    return f"{reverse}.{version}.{kind}"


def _definitions(emulator: "KubeEmulator", gv: str | None, ref_prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The definitions for a group-version (all of them when ``gv`` is None), and each key's name."""
    builtin: list[str] = []
    crds: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, served in emulator.served_resources().items():
        group, version, _ = _split(key)
        if gv is not None and gv != (f"apis/{group}/{version}" if group else f"api/{version}"):
            continue
        if served.crd:
            name = _definition_name(group, version, served.kind)
            crds[name] = _crd_definition(group, version, served, ref_prefix)
            builtin.append(_OBJECT_META)
        else:
            name = schemas.builtin_definition(f"{group}/{version}" if group else version, served.kind) or ""
            if name:
                builtin.append(name)
        names[key] = name
    defs = json.loads(_closure(tuple(sorted(set(builtin))), ref_prefix))
    defs.update(crds)
    return defs, names


_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _operations(emulator: "KubeEmulator", gv: str | None, names: dict[str, str], ref_prefix: str,
                v3: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for key, served in emulator.served_resources().items():
        group, version, plural = _split(key)
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if gv is not None and prefix[1:] != gv:
            continue
        gvk = {"group": group, "version": version, "kind": served.kind}
        ns = "/namespaces/{namespace}" if served.namespaced else ""
        ref = {"$ref": ref_prefix + names[key]} if names.get(key) else {"type": "object"}

        def op(action: str, writes: bool) -> dict[str, Any]:
            params = [_param(p, v3) for p in (_WRITE_PARAMS if writes else ())]
            body = {"content": {"application/json": {"schema": ref}}} if v3 else {"schema": ref}
            return {"operationId": f"{action}{served.kind}", "parameters": params,
                    "responses": {"200": {"description": "OK", **body}},
                    "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}

        paths[f"{prefix}{ns}/{plural}"] = {"get": op("list", False), "post": op("post", True)}
        paths[f"{prefix}{ns}/{plural}/{{name}}"] = {"get": op("get", False), "put": op("put", True),
                                                   "patch": op("patch", True), "delete": op("delete", False)}
        for sub in served.subresources:
            paths[f"{prefix}{ns}/{plural}/{{name}}/{sub}"] = {"get": op("get", False), "put": op("put", True),
                                                             "patch": op("patch", True)}
    return paths


def _param(name: str, v3: bool) -> dict[str, Any]:
    if v3:
        return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    return {"name": name, "in": "query", "type": "string", "uniqueItems": True}


def openapi_v3(emulator: "KubeEmulator", gv: str) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    defs, names = _definitions(emulator, gv, prefix)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": _operations(emulator, gv, names, prefix, True), "components": {"schemas": defs}}


def openapi_v2(emulator: "KubeEmulator") -> dict[str, Any]:
    prefix = "#/definitions/"
    defs, names = _definitions(emulator, None, prefix)
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": _operations(emulator, None, names, prefix, False), "definitions": defs}
