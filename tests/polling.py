"""Waiting in tests for something to happen elsewhere (a controller, a process): poll a
predicate until it answers something truthy, and fail with what was awaited when a
deadline passes. The clusters of ``kubeemu`` and ``controlplane`` wait through it, each
with the pace of what it waits for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float, message: str = "") -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)
