"""Faults a real API server shows, injected into the emulator on demand.

- ``FaultPlan``: the next N requests of a method on a resource fail with a status (500,
  409, 429 with ``Retry-After``...), as an overloaded or contended API server answers.
- ``stall_watches``: open watch streams stop delivering (a half-dead connection).
- ``drop_watches``: open watch streams end, as when an API server restarts or a load
  balancer cuts idle connections; clients resume from their last resourceVersion.
- ``expire_history``: the server forgets the events before now, so a client resuming
  from an older resourceVersion is answered 410 Gone and must list again.

Call them inside the emulator's loop (``EmulatedCluster.call``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web


@dataclass
class Fault:
    method: str
    resource: str
    status: int
    times: int = 1
    retry_after: float | None = None
    # Only requests whose path contains this (a name, "/status"...).
    path_part: str = ""


@dataclass
class FaultPlan:
    """Request faults; the emulator asks ``answer`` before serving a request."""

    faults: list[Fault] = field(default_factory=list)
    injected: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, method: str, resource: str, status: int, *, times: int = 1, retry_after: float | None = None,
            path_part: str = "") -> None:
        self.faults.append(Fault(method, resource, status, times, retry_after, path_part))

    def answer(self, method: str, resource: str, path: str) -> aiohttp.web.Response | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.resource == resource and fault.path_part in path:
                fault.times -= 1
                self.injected.append((method, path, fault.status))
                reason = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError",
                          503: "ServiceUnavailable"}.get(fault.status, "InternalError")
                body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                        "code": fault.status, "reason": reason, "message": f"injected fault ({reason})"}
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                return aiohttp.web.Response(text=json.dumps(body), status=fault.status, headers=headers,
                                            content_type="application/json")
        return None


def plan(emulator: Any) -> FaultPlan:
    """The emulator's fault plan, created on first use."""
    if emulator.fault_plan is None:
        emulator.fault_plan = FaultPlan()
    return emulator.fault_plan


def _aimed(watcher: Any, resource: str | None, agent: str | None) -> bool:
    return (resource is None or watcher.resource == resource) and (agent is None or watcher.agent.startswith(agent))


def stall_watches(emulator: Any, resource: str | None = None, agent: str | None = None) -> None:
    """Open watches of ``resource`` (by clients whose User-Agent starts with ``agent``)
    deliver nothing more."""
    for watcher in emulator.watchers:
        if _aimed(watcher, resource, agent):
            watcher.match = lambda obj: False
            watcher.stalled = True


def drop_watches(emulator: Any, resource: str | None = None, agent: str | None = None) -> int:
    dropped = 0
    for watcher in emulator.watchers:
        if _aimed(watcher, resource, agent):
            watcher.queue.put_nowait(None)
            dropped += 1
    return dropped


def expire_history(emulator: Any, resource: str) -> None:
    """Forget the events of ``resource`` so far: resuming from before now is 410 Gone."""
    emulator.compact(resource)
