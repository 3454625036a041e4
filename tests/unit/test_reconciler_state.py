"""The reconciler's state: one entry per endpoint incarnation (uid), rebuilt from a fresh
list, and per-endpoint locks that outlive a forget while someone holds them."""

from __future__ import annotations

import asyncio

from kubeinfer.config import OperatorSettings
from kubeinfer_operator.reconciler import Reconciler

KEY = ("ml", "e5")


def cr(name: str, uid: str, namespace: str = "ml") -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": {}}


def reconciler() -> Reconciler:
    return Reconciler(settings=OperatorSettings(), client=None)  # type: ignore[arg-type]


async def test_forgetting_an_endpoint_while_its_lock_is_held_keeps_reconciles_in_turn():
    r = reconciler()
    order: list[str] = []

    async def first() -> None:
        async with r.lock(KEY):
            r.forget(KEY)  # the endpoint is deleted mid-reconcile
            await asyncio.sleep(0.05)
            order.append("first done")

    async def second() -> None:
        await asyncio.sleep(0.01)
        async with r.lock(KEY):
            order.append("second runs")

    await asyncio.gather(first(), second())
    assert order == ["first done", "second runs"]
    assert len(r.lock) == 0  # no lock left behind once nobody holds one


def test_an_endpoint_created_again_under_its_name_starts_afresh():
    r = reconciler()
    old = r.state(cr("e5", "uid-1"))
    old.written_status = {"observedGeneration": 1}
    old.applied_versions["ConfigMap"] = "7"
    old.applied_generation = 3
    new = r.state(cr("e5", "uid-2"))
    assert new is not old
    assert (new.written_status, new.applied_versions, new.applied_generation) == (None, {}, None)
    r.seen("DELETED", cr("e5", "uid-1"))  # a late event of the old one
    assert r.endpoints[KEY] is new


def test_a_fresh_list_drops_endpoints_deleted_while_the_watch_was_away():
    r = reconciler()
    r.seen("ADDED", cr("gone", "uid-1"))
    r.seen("ADDED", cr("kept", "uid-2"))
    r.seen("ADDED", cr("elsewhere", "uid-3", namespace="other"))
    r.relisted([cr("kept", "uid-2"), cr("new", "uid-4")], "ml")
    assert sorted(r.endpoints) == [("ml", "kept"), ("ml", "new"), ("other", "elsewhere")]
