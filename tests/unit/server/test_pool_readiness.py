"""A pool's pod stays ready while a model added to it loads: the others go on serving, and
the new endpoint alone says it is not ready yet."""

from __future__ import annotations

import asyncio

import httpx

from model_server.api.app import create_app
from model_server.api.pool import PoolStore
from model_server.backends.base import Backend
from kubeinfer.catalog import parse_endpoint


class HeldBackend(Backend):
    """Loads when its test says so; answers nothing (readiness is what is tested)."""

    def __init__(self, config, gate: asyncio.Event) -> None:
        super().__init__(config)
        self.gate = gate
        self.loaded = False

    async def start(self) -> None:
        await self.gate.wait()
        self.loaded = True

    @property
    def ready(self) -> bool:
        return self.loaded

    async def infer(self, request):  # pragma: no cover - not called
        raise NotImplementedError


def endpoint(name: str):
    return parse_endpoint(name, "text_embedding", {"service": "elasticsearch", "service_settings": {
        "model_id": f"org/{name}", "num_allocations": 1, "num_threads": 1}})


async def test_a_model_added_later_does_not_make_the_pod_unready_while_it_loads():
    gates = {"first": asyncio.Event(), "later": asyncio.Event()}
    store = PoolStore(lambda config: HeldBackend(config, gates[config.inference_id]))
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as client:
        await store.update([endpoint("first")])
        assert (await client.get("/readyz")).status_code == 503  # its first model loads
        gates["first"].set()
        await asyncio.sleep(0.01)
        assert (await client.get("/readyz")).status_code == 200

        await store.update([endpoint("first"), endpoint("later")])
        assert (await client.get("/readyz")).status_code == 200
        later = await client.get("/readyz", params={"model": "later"})
        assert later.status_code == 503 and later.json()["reason"] == "its model is loading"
        assert later.json()["state"] == "loading"
        gates["later"].set()
        await asyncio.sleep(0.01)
        assert (await client.get("/readyz", params={"model": "later"})).status_code == 200
        await store.close()


class BrokenBackend(HeldBackend):
    async def start(self) -> None:
        raise OSError("org/missing is not a model repository")


async def test_a_model_that_failed_to_load_says_so_apart_from_one_loading():
    store = PoolStore(lambda config: BrokenBackend(config, asyncio.Event()))
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as client:
        await store.update([endpoint("missing")])
        await asyncio.sleep(0.01)
        answer = await client.get("/readyz", params={"model": "missing"})
        assert answer.status_code == 503
        assert answer.json() == {"status": "not_ready", "model": "missing", "state": "failed",
                                 "reason": "OSError: org/missing is not a model repository"}
        await store.close()
