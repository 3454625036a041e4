"""Kubernetes' protobuf encoding, read for the few kinds kubectl's typed commands send that
way (``kubectl create namespace``, ``create secret``, ``create configmap``,
``create serviceaccount``); they do not fall back to JSON. Everything else is answered
415. Field numbers are those of Kubernetes' ``generated.proto`` files. Knows bytes and
those messages; nothing about storage or HTTP.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Iterator

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a protobuf message this module reads."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, value


Reader = Callable[[Any], Any]


def _text(value: bytes) -> str:
    return value.decode()


def _bytes64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _map(value_reader: Reader) -> Reader:
    def read(entry: bytes) -> tuple[str, Any]:
        fields = dict(_fields(entry))
        return _text(fields.get(1, b"")), value_reader(fields.get(2, b""))
    return read


def _message(spec: dict[int, tuple[str, Reader, str]]) -> Reader:
    """``spec``: field number -> (JSON name, reader, "one" | "list" | "map")."""
    def read(data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for number, value in _fields(data):
            if number not in spec:
                continue
            name, reader, shape = spec[number]
            if shape == "list":
                out.setdefault(name, []).append(reader(value))
            elif shape == "map":
                key, item = reader(value)
                out.setdefault(name, {})[key] = item
            else:
                out[name] = reader(value)
        # Go writes every string and bool field, empty or not; JSON leaves empty ones out.
        return {k: v for k, v in out.items() if v not in ("", False)}
    return read


_OWNER_REFERENCE = _message({1: ("kind", _text, "one"), 3: ("name", _text, "one"), 4: ("uid", _text, "one"),
                             5: ("apiVersion", _text, "one"), 6: ("controller", bool, "one"),
                             7: ("blockOwnerDeletion", bool, "one")})
_OBJECT_META = _message({
    1: ("name", _text, "one"), 2: ("generateName", _text, "one"), 3: ("namespace", _text, "one"),
    6: ("resourceVersion", _text, "one"), 11: ("labels", _map(_text), "map"),
    12: ("annotations", _map(_text), "map"), 13: ("ownerReferences", _OWNER_REFERENCE, "list"),
    14: ("finalizers", _text, "list"),
})
_NAME_ONLY = _message({1: ("name", _text, "one")})
KINDS: dict[tuple[str, str], Reader] = {
    ("v1", "Namespace"): _message({1: ("metadata", _OBJECT_META, "one"),
                                   2: ("spec", _message({1: ("finalizers", _text, "list")}), "one")}),
    ("v1", "Secret"): _message({1: ("metadata", _OBJECT_META, "one"), 2: ("data", _map(_bytes64), "map"),
                                3: ("type", _text, "one"), 4: ("stringData", _map(_text), "map"),
                                5: ("immutable", bool, "one")}),
    ("v1", "ConfigMap"): _message({1: ("metadata", _OBJECT_META, "one"), 2: ("data", _map(_text), "map"),
                                   3: ("binaryData", _map(_bytes64), "map"), 4: ("immutable", bool, "one")}),
    ("v1", "ServiceAccount"): _message({1: ("metadata", _OBJECT_META, "one"),
                                        3: ("imagePullSecrets", _NAME_ONLY, "list"),
                                        4: ("automountServiceAccountToken", bool, "one")}),
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of one of ``KINDS``."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    envelope = dict(_fields(body[len(MAGIC):]))
    type_meta = dict(_fields(envelope.get(1, b"")))
    api_version, kind = _text(type_meta.get(1, b"")), _text(type_meta.get(2, b""))
    reader = KINDS.get((api_version, kind))
    if reader is None:
        raise ProtobufError(f"{api_version} {kind} is not read from protobuf here")
    return {"apiVersion": api_version, "kind": kind, **reader(envelope.get(2, b""))}
