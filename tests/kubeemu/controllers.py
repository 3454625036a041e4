"""Stand-ins for the controllers of a real cluster that the operator's behaviour depends on.

``DeploymentController`` plays kube-controller-manager's part for Deployments: after a
Deployment is created or its pod template changes, it reports the rollout in progress,
then, after ``delay`` seconds, every replica updated, ready and available. Tests can
``hold()`` rollouts to observe an endpoint while it is progressing, or make one fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from .emulator import KubeEmulator

DEPLOYMENTS = "apps/v1/deployments"
MANAGER = "kube-controller-manager"


@attrs.define(kw_only=True)
class DeploymentController:
    emulator: KubeEmulator
    delay: float = 0.05
    held: bool = False
    _tasks: set[asyncio.Task] = attrs.field(factory=set, init=False)
    _pending: set[tuple[str, str]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self.emulator.on_change(self._changed)

    def _changed(self, event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key != DEPLOYMENTS or event_type == "DELETED":
            return
        meta, status = obj["metadata"], obj.get("status") or {}
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if status.get("observedGeneration") == meta.get("generation") and status.get("replicas") == replicas:
            return
        ident = (meta["namespace"], meta["name"])
        # The rollout starts at once: the new generation is observed, no replica updated yet.
        self.emulator.update_status(DEPLOYMENTS, *ident, {
            "observedGeneration": meta.get("generation"),
            "replicas": replicas,
            "updatedReplicas": 0,
            "conditions": [_condition("Progressing", "True", "ReplicaSetUpdated")],
        }, manager=MANAGER)
        self._pending.add(ident)
        if not self.held:
            self._schedule(ident)

    def _schedule(self, ident: tuple[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._complete(ident))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, ident: tuple[str, str]) -> None:
        await asyncio.sleep(self.delay)
        self.finish(*ident)

    def finish(self, namespace: str, name: str) -> None:
        """Complete the rollout of a Deployment: all its replicas ready and available."""
        self._pending.discard((namespace, name))
        obj = self.emulator.store.get((DEPLOYMENTS, namespace, name))
        if obj is None:
            return
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        self.emulator.update_status(DEPLOYMENTS, namespace, name, {
            "observedGeneration": obj["metadata"].get("generation"),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "unavailableReplicas": None,
            "conditions": [
                _condition("Available", "True", "MinimumReplicasAvailable"),
                _condition("Progressing", "True", "NewReplicaSetAvailable"),
            ],
        }, manager=MANAGER)

    def fail(self, namespace: str, name: str, message: str = "ImagePullBackOff") -> None:
        """Report a rollout that cannot progress (the Deployment's progress deadline passed)."""
        self._pending.discard((namespace, name))
        obj = self.emulator.store.get((DEPLOYMENTS, namespace, name))
        if obj is None:
            return
        self.emulator.update_status(DEPLOYMENTS, namespace, name, {
            "observedGeneration": obj["metadata"].get("generation"),
            "readyReplicas": None,
            "availableReplicas": None,
            "unavailableReplicas": (obj.get("spec") or {}).get("replicas", 1),
            "conditions": [
                _condition("Available", "False", "MinimumReplicasUnavailable"),
                _condition("Progressing", "False", "ProgressDeadlineExceeded", message),
            ],
        }, manager=MANAGER)

    def hold(self) -> None:
        """Stop completing rollouts until ``release()``."""
        self.held = True

    def release(self) -> None:
        self.held = False
        for ident in sorted(self._pending):
            self._schedule(ident)


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message or reason,
            "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}
