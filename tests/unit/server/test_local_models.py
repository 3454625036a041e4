"""Local model backends served over HTTP: tiny random BERTs built by the tests for shapes,
ordering, truncation and errors; all-MiniLM-L6-v2 for real embeddings compared with
sentence-transformers' own."""

from __future__ import annotations

import math

import pytest

from endpoint_serving import serving
from kubeinfer.catalog import parse_endpoint


def endpoint(task: str, model_id: str, inference_id: str = "local", **task_settings):
    body = {"service": "elasticsearch", "service_settings": {"model_id": str(model_id), "num_allocations": 1,
                                                        "num_threads": 1}}
    if task_settings:
        body["task_settings"] = task_settings
    return parse_endpoint(inference_id, task, body)


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_text_embedding_has_the_model_dimensions_and_is_normalised(tiny_models):
    async with serving(endpoint("text_embedding", tiny_models["embedding"])) as (client, backend):
        r = await client.post("/_inference/text_embedding/local", json={"input": ["the cat sat", "blue sky"]})
        assert r.status_code == 200, r.text
        vectors = [e["embedding"] for e in r.json()["text_embedding"]]
        assert [len(v) for v in vectors] == [32, 32]
        assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5 for v in vectors)
        assert vectors[0] != vectors[1]
        assert backend.describe() == {"dimensions": 32, "similarity": "cosine"}


async def test_mean_pooling_without_normalisation_when_no_sentence_transformers_config(tiny_models):
    async with serving(endpoint("text_embedding", tiny_models["embedding_plain"])) as (client, _):
        r = await client.post("/_inference/local", json={"input": "the cat sat on the mat"})
    [vector] = [e["embedding"] for e in r.json()["text_embedding"]]
    assert len(vector) == 32
    assert abs(math.sqrt(sum(x * x for x in vector)) - 1.0) > 1e-3


async def test_over_long_input_is_truncated_not_refused(tiny_models):
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # far past 32 tokens
    async with serving(endpoint("text_embedding", tiny_models["embedding"])) as (client, _):
        long = await client.post("/_inference/local", json={"input": long_text})
        cut = await client.post("/_inference/local", json={"input": " ".join(long_text.split()[:30])})
    assert long.status_code == 200
    # Both fill the 32-token window with the same tokens, so they embed the same.
    assert cosine(long.json()["text_embedding"][0]["embedding"], cut.json()["text_embedding"][0]["embedding"]) > 0.9999


async def test_model_prompts_prefix_inputs_by_input_type(tmp_path):
    from tiny_bert import build_tiny_bert

    folder = build_tiny_bert(tmp_path / "prompted", sentence_transformers={
        "pooling": "cls", "prompts": {"query": "query: ", "passage": "passage: "}})
    async with serving(endpoint("text_embedding", folder)) as (client, _):
        async def embed(text, input_type=None):
            body = {"input": text} | ({"input_type": input_type} if input_type else {})
            r = await client.post("/_inference/local", json=body)
            return r.json()["text_embedding"][0]["embedding"]

        assert await embed("paris", "search") == await embed("query: paris")
        assert await embed("paris", "ingest") == await embed("passage: paris")
        assert await embed("paris") != await embed("query: paris")


async def test_e5_models_get_query_and_passage_prefixes_by_name(tiny_models, tmp_path):
    import shutil

    e5 = tmp_path / "my-e5-small"
    shutil.copytree(tiny_models["embedding"], e5)
    async with serving(endpoint("text_embedding", e5)) as (client, _):
        search = await client.post("/_inference/local", json={"input": "rain", "input_type": "search"})
        prefixed = await client.post("/_inference/local", json={"input": "query: rain"})
    assert search.json() == prefixed.json()


async def test_sparse_embedding_is_token_weights_without_zeros_or_special_tokens(tiny_models):
    from tiny_bert import vocabulary

    long_text = " ".join(["the cat sat on the mat"] * 20)
    async with serving(endpoint("sparse_embedding", tiny_models["sparse"])) as (client, _):
        r = await client.post("/_inference/sparse_embedding/local", json={"input": ["the cat sat", long_text]})
    assert r.status_code == 200, r.text
    short, long = r.json()["sparse_embedding"]
    assert short["is_truncated"] is False
    assert long["is_truncated"] is True
    for result in (short, long):
        weights = result["embedding"]
        assert weights, "a SPLADE vector has some weight"
        assert all(w > 0 for w in weights.values())
        assert set(weights) <= set(vocabulary()) - {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
        assert list(weights.values()) == sorted(weights.values(), reverse=True)


async def test_rerank_sorts_by_score_and_honours_top_n_and_return_documents(tiny_models):
    docs = ["the cat sat", "blue sky today", "paris is the capital of france", "dogs run fast", "rain"]
    config = endpoint("rerank", tiny_models["rerank"], return_documents=True)
    async with serving(config) as (client, _):
        full = await client.post("/_inference/rerank/local", json={"input": docs, "query": "capital of france"})
        top = await client.post("/_inference/rerank/local", json={
            "input": docs, "query": "capital of france", "top_n": 2, "return_documents": False})
        single = [
            (await client.post("/_inference/local", json={"input": [d], "query": "capital of france"})).json()
            for d in docs
        ]
    ranked = full.json()["rerank"]
    assert sorted(r["index"] for r in ranked) == list(range(5))
    scores = [r["relevance_score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    assert all(r["text"] == docs[r["index"]] for r in ranked)
    # Scores do not depend on what else is in the request.
    for r in ranked:
        assert single[r["index"]]["rerank"][0]["relevance_score"] == pytest.approx(r["relevance_score"], abs=1e-5)
    assert top.json()["rerank"] == [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in ranked[:2]]


async def test_local_rerank_returns_the_documents_unless_told_not_to(tiny_models):
    # Elasticsearch's server default for the models it runs: return_documents is true.
    async with serving(endpoint("rerank", tiny_models["rerank"])) as (client, _):
        r = await client.post("/_inference/rerank/local", json={"input": ["a cat", "rain"], "query": "cat"})
    assert {item["text"] for item in r.json()["rerank"]} == {"a cat", "rain"}


async def test_unknown_local_model_fails_start_with_a_clear_reason(tmp_path):
    from kubeinfer.errors import ElasticsearchError

    with pytest.raises(ElasticsearchError) as caught:
        async with serving(endpoint("text_embedding", tmp_path / "missing")):
            pass
    assert caught.value.status == 404
    assert caught.value.reason.startswith(f"Could not find trained model [{tmp_path / 'missing'}]")


async def test_uncached_hub_model_offline_is_not_found():
    from kubeinfer.errors import ElasticsearchError

    with pytest.raises(ElasticsearchError) as caught:
        async with serving(endpoint("text_embedding", "kubeinfer-tests/no-such-model")):
            pass
    assert caught.value.type == "resource_not_found_exception"


async def test_minilm_matches_sentence_transformers_and_ranks_paraphrases_closer(minilm_path):
    from sentence_transformers import SentenceTransformer

    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    async with serving(endpoint("text_embedding", minilm_path)) as (client, backend):
        r = await client.post("/_inference/text_embedding/local", json={"input": sentences})
        assert backend.describe()["dimensions"] == 384
    ours = [e["embedding"] for e in r.json()["text_embedding"]]
    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(sentences, convert_to_numpy=True)
    for mine, theirs in zip(ours, reference):
        assert len(mine) == 384
        assert max(abs(a - float(b)) for a, b in zip(mine, theirs)) < 1e-4
        assert cosine(mine, theirs.tolist()) > 0.99999
    assert cosine(ours[0], ours[1]) > cosine(ours[0], ours[2]) + 0.3


async def test_elser_builtin_model_can_be_replaced_per_deployment(tiny_models, monkeypatch):
    monkeypatch.setenv("KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2", str(tiny_models["sparse"]))
    config = parse_endpoint("my-elser", "sparse_embedding", {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}})
    async with serving(config) as (client, _):
        r = await client.post("/_inference/sparse_embedding/my-elser", json={"input": "the cat sat"})
    assert r.status_code == 200
    assert r.json()["sparse_embedding"][0]["embedding"]


async def test_builtin_model_not_in_the_offline_cache_names_the_model_it_maps_to():
    from kubeinfer.errors import ElasticsearchError

    with pytest.raises(ElasticsearchError) as caught:
        async with serving(endpoint("text_embedding", ".multilingual-e5-small")):
            pass
    assert caught.value.status == 404
    assert "[intfloat/multilingual-e5-small] is not in the model cache" in caught.value.reason


async def test_more_inputs_than_one_request_may_carry_is_a_400(tiny_models, monkeypatch):
    monkeypatch.setenv("KUBEINFER_MAX_INPUTS_PER_REQUEST", "8")
    async with serving(endpoint("text_embedding", tiny_models["embedding"])) as (client, _):
        over = await client.post("/_inference/local", json={"input": ["rain"] * 9})
        at = await client.post("/_inference/local", json={"input": ["rain"] * 8})
    assert over.status_code == 400
    assert over.json()["error"]["type"] == "action_request_validation_exception"
    assert "[9] entries, more than the [8]" in over.json()["error"]["reason"]
    assert len(at.json()["text_embedding"]) == 8


def test_cpu_batches_run_in_the_slices_that_cost_least():
    import itertools
    import random

    from model_server.backends.local.encoders import cheapest_slices

    def cost(slices, lengths, pass_cost):
        return sum(pass_cost + lengths[s[-1]] * len(s) for s in slices)

    rng = random.Random(3)
    for _ in range(200):
        lengths = sorted(rng.randint(3, 40) for _ in range(rng.randint(1, 9)))
        pass_cost = rng.choice([0, 8, 32, 256])
        slices = cheapest_slices(lengths, pass_cost)
        assert [i for s in slices for i in s] == list(range(len(lengths)))
        cheapest = min(
            cost([range(a, b) for a, b in zip((0,) + cuts, cuts + (len(lengths),))], lengths, pass_cost)
            for n in range(len(lengths)) for cuts in itertools.combinations(range(1, len(lengths)), n)
        )
        assert cost(slices, lengths, pass_cost) == cheapest
    assert cheapest_slices([3, 3, 4, 10, 10, 11, 30], 32) == [range(0, 6), range(6, 7)]
    assert cheapest_slices([7] * 64, 32) == [range(0, 64)]


def test_side_by_side_lanes_get_parts_whose_slowest_is_fastest():
    import itertools
    import random

    from model_server.backends.local.encoders import balanced_parts

    def slowest(parts, lengths, pass_cost):
        return max(pass_cost + lengths[p.stop - 1] * (p.stop - p.start) for p in parts)

    rng = random.Random(5)
    for _ in range(200):
        lengths = sorted(rng.randint(3, 40) for _ in range(rng.randint(1, 9)))
        lanes, pass_cost = rng.randint(1, 4), rng.choice([0, 8, 32, 256])
        parts = balanced_parts(lengths, lanes, pass_cost)
        assert len(parts) <= lanes and [i for p in parts for i in range(p.start, p.stop)] == list(range(len(lengths)))
        best = min(
            slowest([slice(a, b) for a, b in zip((0,) + cuts, cuts + (len(lengths),))], lengths, pass_cost)
            for n in range(min(lanes, len(lengths))) for cuts in itertools.combinations(range(1, len(lengths)), n)
        )
        assert slowest(parts, lengths, pass_cost) == best
    assert balanced_parts([5] * 8, 2, 32) == [slice(0, 4), slice(4, 8)]
