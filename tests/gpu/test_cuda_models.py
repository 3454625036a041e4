"""Local models on a CUDA GPU (bfloat16, SDPA) answer as they do on CPU in float32.

Skipped on machines without a CUDA device. Each task type is served twice over HTTP, once
on ``cuda`` and once on ``cpu`` with the torch engine, and the answers are compared within
what bfloat16 allows; the pooled batches of the GPU path are checked too, with many
concurrent requests of different lengths.
"""

from __future__ import annotations

import asyncio
import math

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: the GPU path is checked on GPU machines only", allow_module_level=True)

from endpoint_serving import serving  # noqa: E402
from kubeinfer.catalog import parse_endpoint  # noqa: E402

SENTENCES = ["the cat sat on the mat", "blue sky", "paris is the capital of france",
             "rain today and sun tomorrow", "the quick brown fox jumps over the lazy dog " * 3]
CPU_TORCH = {"engine": "torch"}


def endpoint(task: str, model_id, **task_settings):
    body = {"service": "elasticsearch",
            "service_settings": {"model_id": str(model_id), "num_allocations": 1, "num_threads": 1}}
    if task_settings:
        body["task_settings"] = task_settings
    return parse_endpoint("gpu", task, body)


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def answer(config, device: str, path: str, body: dict, **options) -> dict:
    async with serving(config, device=device, **options) as (client, _):
        r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def eager() -> dict:
    from kubeinfer.config import ServerSettings

    return {"settings": ServerSettings(cuda_graphs=False)}


@pytest.fixture(params=["tiny", "minilm"])
def embedding_model(request, tiny_models):
    if request.param == "tiny":
        return tiny_models["embedding"]
    return request.getfixturevalue("minilm_path")


async def test_text_embedding_on_gpu_matches_cpu(embedding_model):
    config = endpoint("text_embedding", embedding_model)
    body = {"input": SENTENCES}
    gpu = await answer(config, "cuda", "/_inference/text_embedding/gpu", body)
    cpu = await answer(config, "cpu", "/_inference/text_embedding/gpu", body, engine=CPU_TORCH)
    pairs = zip(gpu["text_embedding"], cpu["text_embedding"])
    cosines = [cosine(g["embedding"], c["embedding"]) for g, c in pairs]
    assert min(cosines) > 0.99, cosines
    assert torch.cuda.max_memory_allocated() > 0


async def test_cuda_graphs_are_recorded_and_answer_as_the_eager_pass(embedding_model):
    config = endpoint("text_embedding", embedding_model)
    sizes = [1, 3, 8, 17]  # several batch buckets, and a width that is not a bucket's
    texts = [" ".join(SENTENCES[i % len(SENTENCES)] for i in range(n)) for n in sizes]
    async with serving(config, device="cuda") as (client, backend):
        graphed = await client.post("/_inference/gpu", json={"input": texts})
        assert backend.running_on.get("cuda_graphs") is True
        assert backend.running_on["cosine"] > 0.999
    async with serving(config, device="cuda", **eager()) as (client, backend):
        plain = await client.post("/_inference/gpu", json={"input": texts})
        assert not backend.running_on.get("cuda_graphs")
    for g, p in zip(graphed.json()["text_embedding"], plain.json()["text_embedding"]):
        assert cosine(g["embedding"], p["embedding"]) > 0.999


async def test_concurrent_requests_on_gpu_each_get_their_own_vector(tiny_models):
    config = endpoint("text_embedding", tiny_models["embedding"])
    async with serving(config, device="cuda") as (client, _):
        alone = [(await client.post("/_inference/gpu", json={"input": s})).json() for s in SENTENCES]
        together = await asyncio.gather(*(client.post("/_inference/gpu", json={"input": s})
                                          for s in SENTENCES * 8))
    for i, r in enumerate(together):
        expected = alone[i % len(SENTENCES)]["text_embedding"][0]["embedding"]
        assert cosine(r.json()["text_embedding"][0]["embedding"], expected) > 0.999


async def test_sparse_embedding_on_gpu_keeps_the_heaviest_tokens(tiny_models):
    config = endpoint("sparse_embedding", tiny_models["sparse"])
    body = {"input": SENTENCES[:3]}
    gpu = await answer(config, "cuda", "/_inference/sparse_embedding/gpu", body)
    cpu = await answer(config, "cpu", "/_inference/sparse_embedding/gpu", body, engine=CPU_TORCH)
    for g, c in zip(gpu["sparse_embedding"], cpu["sparse_embedding"]):
        top = lambda weights: set(sorted(weights, key=weights.get, reverse=True)[:5])  # noqa: E731
        assert len(top(g["embedding"]) & top(c["embedding"])) >= 4
        for token in set(g["embedding"]) & set(c["embedding"]):
            assert g["embedding"][token] == pytest.approx(c["embedding"][token], rel=0.05, abs=0.05)


async def test_rerank_on_gpu_orders_as_cpu_does(tiny_models):
    config = endpoint("rerank", tiny_models["rerank"])
    body = {"query": "capital of france", "input": SENTENCES}
    gpu = await answer(config, "cuda", "/_inference/rerank/gpu", body)
    cpu = await answer(config, "cpu", "/_inference/rerank/gpu", body, engine=CPU_TORCH)
    gpu_scores = {r["index"]: r["relevance_score"] for r in gpu["rerank"]}
    cpu_scores = {r["index"]: r["relevance_score"] for r in cpu["rerank"]}
    assert gpu_scores.keys() == cpu_scores.keys()
    for index, score in cpu_scores.items():
        assert gpu_scores[index] == pytest.approx(score, abs=0.02)
