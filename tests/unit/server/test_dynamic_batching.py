"""Dynamic batching: concurrent requests share forward passes, every caller gets exactly
its own results in order, the queue is bounded and deadlines are kept.

Through HTTP on a tiny BERT for the end-to-end behaviour; the batcher's own API with a
recording batch function for the budget rules.
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from endpoint_serving import serving
from model_server.backends.local.batching import BatchingOptions, DynamicBatcher
from kubeinfer.catalog import parse_endpoint
from kubeinfer.errors import ElasticsearchError
from tiny_bert import WORDS


def endpoint(model_id, inference_id):
    return parse_endpoint(inference_id, "text_embedding",
                          {"service": "elasticsearch", "service_settings": {"model_id": str(model_id), "num_allocations": 1, "num_threads": 1}})


def metric(text: str, name: str, inference_id: str) -> float:
    match = re.search(rf'^{name}{{inference_id="{re.escape(inference_id)}"}} (\S+)$', text, re.M)
    assert match, f"{name} for {inference_id} not exposed"
    return float(match.group(1))


def close(a: list[list[float]], b: list[list[float]], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(p - q) <= tol for p, q in zip(x, y)) for x, y in zip(a, b))


async def test_200_mixed_requests_from_20_clients_each_get_their_own_answers(tiny_models):
    rng = random.Random(7)
    bodies = []
    for i in range(200):
        # Every tenth request is large enough to be tokenized off the event loop.
        count = rng.randint(17, 24) if i % 10 == 0 else rng.randint(1, 4)
        texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 25))) + f" {i}" for _ in range(count)]
        body = {"input": texts if len(texts) > 1 or i % 2 else texts[0]}
        if i % 3 == 0:
            body["input_type"] = rng.choice(["search", "ingest"])
        bodies.append(body)

    config = endpoint(tiny_models["embedding"], "concurrent")
    async with serving(config, batching={"max_wait": 0.005}) as (client, _):
        expected = []
        for body in bodies:  # one at a time: every batch holds one request
            r = await client.post("/_inference/concurrent", json=body)
            expected.append([e["embedding"] for e in r.json()["text_embedding"]])
        before = (await client.get("/metrics")).text

        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(bodies)):
            queue.put_nowait(i)
        answers: dict[int, list[list[float]]] = {}

        async def one_client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post("/_inference/text_embedding/concurrent", json=bodies[i])
                assert r.status_code == 200, r.text
                answers[i] = [e["embedding"] for e in r.json()["text_embedding"]]

        await asyncio.gather(*(one_client() for _ in range(20)))
        after = (await client.get("/metrics")).text

    assert sorted(answers) == list(range(200))
    mixed_up = [i for i in range(200) if not close(answers[i], expected[i])]
    assert mixed_up == []
    batches = metric(after, "kubeinfer_batch_size_count", "concurrent") - metric(
        before, "kubeinfer_batch_size_count", "concurrent")
    inputs = metric(after, "kubeinfer_batch_size_sum", "concurrent") - metric(
        before, "kubeinfer_batch_size_sum", "concurrent")
    assert inputs == sum(len(e) for e in expected)
    assert inputs / batches > 2, "concurrent requests should share forward passes"
    assert metric(after, "kubeinfer_tokens_processed_total", "concurrent") > 0
    assert metric(after, "kubeinfer_queue_depth", "concurrent") == 0


async def test_full_queue_answers_429_and_loses_nothing(tiny_models):
    config = endpoint(tiny_models["embedding"], "bounded")
    options = {"queue_capacity": 3, "max_wait": 0.2}
    async with serving(config, batching=options) as (client, _):
        texts = [f"the cat sat {i}" for i in range(12)]
        expected = {}
        for text in texts:
            expected[text] = (await client.post("/_inference/bounded", json={"input": text})).json()
        responses = await asyncio.gather(*(client.post("/_inference/bounded", json={"input": t}) for t in texts))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 3 and statuses.count(429) >= 1
    for text, r in zip(texts, responses):
        if r.status_code == 200:
            assert close([r.json()["text_embedding"][0]["embedding"]], [expected[text]["text_embedding"][0]["embedding"]])
        else:
            body = r.json()
            assert body["status"] == 429
            assert body["error"]["type"] == "status_exception"
            assert body["error"]["reason"] == "inference process queue is full. Unable to execute command"


async def test_request_past_its_deadline_is_answered_408_and_never_reaches_the_model():
    import time

    seen: list[list[str]] = []

    def slow_batch(items):
        seen.append(list(items))
        time.sleep(0.3)
        return [len(item) for item in items]

    batcher = DynamicBatcher(slow_batch, name="deadlines", options=BatchingOptions(max_wait=0))
    await batcher.start()
    try:
        first = asyncio.create_task(batcher.submit([Item("first")]))
        await asyncio.sleep(0.05)  # the first batch is running now
        late = asyncio.create_task(batcher.submit([Item("late")], timeout=0.1))
        fine = asyncio.create_task(batcher.submit([Item("patient")], timeout=5))
        assert await first == [5]
        with pytest.raises(ElasticsearchError) as caught:
            await late
        assert caught.value.status == 408
        assert await fine == [7]
    finally:
        await batcher.close()
    assert seen == [["first"], ["patient"]]


async def test_http_timeout_parameter_bounds_the_wait_for_a_batch(tiny_models):
    config = endpoint(tiny_models["embedding"], "deadlines-http")
    async with serving(config) as (client, _):
        r = await client.post("/_inference/deadlines-http?timeout=0s", json={"input": "no time at all"})
        fine = await client.post("/_inference/deadlines-http?timeout=30s", json={"input": "in time"})
    assert r.status_code == 408
    assert r.json()["error"]["reason"] == "timeout [0s] waiting for inference result"
    assert fine.status_code == 200


class Item(str):
    """A stand-in tokenized input whose length is its token count."""


async def test_batches_respect_token_budget_and_size_and_group_similar_lengths():
    seen: list[list[str]] = []

    def run_batch(items):
        seen.append(list(items))
        return [f"out:{item}" for item in items]

    options = BatchingOptions(max_batch_size=4, max_batch_tokens=40, max_wait=0.05, queue_capacity=100)
    batcher = DynamicBatcher(run_batch, name="budget-test", options=options)
    await batcher.start()
    try:
        lengths = [3, 18, 4, 17, 5, 19, 3, 2, 16, 4]
        items = [Item(chr(97 + i) * n) for i, n in enumerate(lengths)]
        results = await asyncio.gather(*(batcher.submit([item]) for item in items))
        multi = await batcher.submit([Item("x" * 5), Item("y" * 2), Item("z" * 9)])
    finally:
        await batcher.close()
    assert [r[0] for r in results] == [f"out:{item}" for item in items]
    assert multi == ["out:xxxxx", "out:yy", "out:zzzzzzzzz"]
    for batch in seen:
        assert len(batch) <= 4
        assert max(map(len, batch)) * len(batch) <= 40 or len(batch) == 1
    first = seen[0]
    assert items[0] in first  # the oldest input seeds the first batch
    assert all(len(item) <= 5 for item in first)  # and short inputs keep it company


async def test_batch_failure_reaches_its_callers_and_the_batcher_goes_on():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        if any("boom" in item for item in items):
            raise RuntimeError("device lost")
        return [len(item) for item in items]

    batcher = DynamicBatcher(run_batch, name="failing", options=BatchingOptions(max_wait=0))
    await batcher.start()
    try:
        with pytest.raises(ElasticsearchError) as caught:
            await batcher.submit([Item("boom")])
        assert caught.value.status == 500
        assert await batcher.submit([Item("fine")]) == [4]
    finally:
        await batcher.close()


async def test_inputs_waiting_when_a_batch_ends_go_to_the_model_before_its_callers_are_answered():
    import time

    seen: list[list[str]] = []

    def run_batch(items):
        seen.append(list(items))
        time.sleep(0.1)
        return [len(item) for item in items]

    # A long wait for company: the answered callers' next requests would make it in time.
    batcher = DynamicBatcher(run_batch, name="hand-off", options=BatchingOptions(max_wait=0.5))
    await batcher.start()

    async def client(first: str, then: str) -> list[int]:
        return await batcher.submit([Item(first)]) + await batcher.submit([Item(then)])

    try:
        clients = [asyncio.create_task(client("a1", "c1")), asyncio.create_task(client("a2", "c2"))]
        await asyncio.sleep(0.05)  # the first batch is running now
        waiting = asyncio.create_task(batcher.submit([Item("b")]))
        assert await asyncio.gather(*clients) == [[2, 2], [2, 2]]
        assert await waiting == [1]
    finally:
        await batcher.close()
    assert seen == [["a1", "a2"], ["b"], ["c1", "c2"]]


async def test_the_pods_waiting_and_running_requests_and_token_budget_usage_are_exposed():
    import threading

    from model_server.api.metrics import exposition

    release = threading.Event()

    def held_batch(items):
        release.wait(5)
        return [len(item) for item in items]

    def gauge(name: str) -> float:
        text = exposition()[0].decode()
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))

    before = gauge("kubeinfer_requests_waiting"), gauge("kubeinfer_requests_running")
    batcher = DynamicBatcher(held_batch, name="picker-gauges",
                             options=BatchingOptions(max_wait=0, max_batch_size=1, max_batch_tokens=20))
    await batcher.start()
    try:
        first = asyncio.create_task(batcher.submit([Item("ten chars!")]))
        await asyncio.sleep(0.05)  # on the model, which holds it
        second = asyncio.create_task(batcher.submit([Item("waits")]))
        third = asyncio.create_task(batcher.submit([Item("waits too")]))
        await asyncio.sleep(0.05)
        assert gauge("kubeinfer_requests_running") - before[1] == 1
        assert gauge("kubeinfer_requests_waiting") - before[0] == 2
        assert gauge("kubeinfer_batch_token_budget_usage") >= 0.5  # 10 of 20 tokens
        release.set()
        assert [await t for t in (first, second, third)] == [[10], [5], [9]]
        await asyncio.sleep(0.05)
        assert gauge("kubeinfer_requests_waiting") == before[0]
        assert gauge("kubeinfer_requests_running") == before[1]
    finally:
        release.set()
        await batcher.close()
