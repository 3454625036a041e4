"""JSON from untrusted bytes: request bodies, provider answers, files read back at start.

``loads`` is the one way kubeinfer decodes JSON it did not write itself. Beyond
the standard library's parser it refuses what would break later, far from the parser:
strings holding lone UTF-16 surrogates (``"\\ud800"``, which no UTF-8 encoder accepts),
nesting deeper than ``MAX_DEPTH`` (recursion errors in whatever walks the value),
numbers longer than ``MAX_NUMBER_LENGTH`` characters (Python's integer conversion limit,
or a float that overflows to infinity) and ``NaN``/``Infinity`` (not JSON, and not
writable back as JSON). Limits follow Jackson's ``StreamReadConstraints``, which
Elasticsearch's parser applies. Every refusal is a ``JSONRefused`` (a ``ValueError``)
with a reason fit to show the sender.

orjson reads first: it refuses lone surrogates, ``NaN``/``Infinity`` and numbers that
overflow by itself, and a document with no more brackets than ``MAX_DEPTH`` cannot nest
deeper, so such a document needs no walk of its own; a provider's embedding answer of 1536
floats reads in about 40 us instead of 900. Anything orjson refuses, or with more brackets,
goes through the standard library's parser and the checks below, which give the reason.
One difference remains: orjson reads an integer beyond 64 bits as a float.

This module knows nothing of HTTP or of Elasticsearch's error shapes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_DEPTH = 100
MAX_NUMBER_LENGTH = 1000

_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRefused(ValueError):
    """Text that is not JSON kubeinfer accepts; ``str()`` says why."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_LENGTH:
        raise JSONRefused(f"number of {len(text)} characters exceeds the maximum allowed ({MAX_NUMBER_LENGTH})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_LENGTH:
        raise JSONRefused(f"number of {len(text)} characters exceeds the maximum allowed ({MAX_NUMBER_LENGTH})")
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"number [{text[:40]}] is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise JSONRefused(f"[{name}] is not a JSON value")


def _check(value: Any, max_depth: int) -> None:
    """Walk ``value`` without recursion: depth and lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JSONRefused("string holds an unpaired UTF-16 surrogate")
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise JSONRefused(f"document nesting depth exceeds the maximum allowed ({max_depth})")
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        raise JSONRefused("string holds an unpaired UTF-16 surrogate")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``data`` (UTF-8 bytes or text), or ``JSONRefused``."""
    brackets = data.count(b"[") + data.count(b"{") if isinstance(data, (bytes, bytearray)) else \
        data.count("[") + data.count("{")
    if brackets <= max_depth:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library's parser and the checks say why
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise JSONRefused(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise JSONRefused(f"document nesting depth exceeds the maximum allowed ({max_depth})") from None
    except JSONRefused:
        raise
    except ValueError as exc:  # json.JSONDecodeError included
        raise JSONRefused(str(exc)) from None
    _check(value, max_depth)
    return value
