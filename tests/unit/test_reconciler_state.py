"""The reconciler's per-endpoint locks: reconciles of one endpoint take turns, and a lock
goes once nobody holds or waits for it."""

from __future__ import annotations

import asyncio

from kubeinfer.config import OperatorSettings
from kubeinfer_operator.reconciler import Reconciler

KEY = ("ml", "e5")


def reconciler() -> Reconciler:
    return Reconciler(settings=OperatorSettings(), client=None)  # type: ignore[arg-type]


async def test_reconciles_of_one_endpoint_take_turns_and_leave_no_lock_behind():
    r = reconciler()
    order: list[str] = []

    async def first() -> None:
        async with r.lock(KEY):
            await asyncio.sleep(0.05)
            order.append("first done")

    async def second() -> None:
        await asyncio.sleep(0.01)
        async with r.lock(KEY):
            order.append("second runs")

    await asyncio.gather(first(), second())
    assert order == ["first done", "second runs"]
    assert len(r.lock) == 0  # no lock left behind once nobody holds one
