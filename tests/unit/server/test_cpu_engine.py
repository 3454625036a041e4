"""The CPU engine of local models: ONNX Runtime exported into the model cache, checked
against torch when the model loads, int8 opt-in with a floor; served over HTTP and
compared with the torch engine's answers on the same inputs."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from pathlib import Path

import pytest

from endpoint_serving import serving
from kubeinfer.catalog import parse_endpoint
from kubeinfer.errors import ElasticsearchError

SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]


def endpoint(task: str, model_id: str | Path, threads: int = 1):
    return parse_endpoint("local", task, {"service": "elasticsearch", "service_settings": {
        "model_id": str(model_id), "num_allocations": 1, "num_threads": threads}})


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def answer(config, body, cache: Path, **engine):
    async with serving(config, cache_dir=cache, engine=engine) as (client, backend):
        r = await client.post(f"/_inference/{config.task_type.value}/local", json=body)
        assert r.status_code == 200, r.text
        return r.json(), backend.running_on


@pytest.fixture(scope="module")
def minilm_cache(tmp_path_factory) -> Path:
    """One model cache for the MiniLM tests, as the replicas of a Deployment share one."""
    return tmp_path_factory.mktemp("model-cache")


def exports(cache: Path) -> list[Path]:
    return sorted(cache.glob("kubeinfer-onnx/*/*/*/*/model.onnx"))


async def test_minilm_on_onnx_answers_as_torch_does_and_is_exported_once(minilm_path, minilm_cache):
    tmp_path = minilm_cache
    config = endpoint("text_embedding", minilm_path)
    body = {"input": SENTENCES}
    torch_answer, torch_engine = await answer(config, body, tmp_path, engine="torch")
    onnx_answer, onnx_engine = await answer(config, body, tmp_path)
    assert torch_engine == {"engine": "torch", "quantization": "none"}
    assert onnx_engine["engine"] == "onnx" and onnx_engine["cosine"] >= 0.9999
    [export] = exports(tmp_path)
    assert export.parent.name == "fp32"
    for ours, theirs in zip(onnx_answer["text_embedding"], torch_answer["text_embedding"]):
        assert len(ours["embedding"]) == 384
        assert cosine(ours["embedding"], theirs["embedding"]) > 0.99999

    written = export.stat().st_mtime_ns
    await answer(config, body, tmp_path, engine="onnx")  # a restart, or another replica on the same cache
    assert exports(tmp_path) == [export] and export.stat().st_mtime_ns == written


async def test_int8_minilm_reports_its_cosine_and_stays_close_to_fp32(minilm_path, minilm_cache, caplog):
    tmp_path = minilm_cache
    config = endpoint("text_embedding", minilm_path)
    body = {"input": SENTENCES}
    caplog.set_level(logging.INFO, logger="model_server")
    fp32, _ = await answer(config, body, tmp_path)
    int8, running_on = await answer(config, body, tmp_path, quantization="int8")
    assert running_on["quantization"] == "int8" and 0.99 <= running_on["cosine"] < 1.0
    assert "int8, mean cosine" in caplog.text
    vectors = [e["embedding"] for e in int8["text_embedding"]]
    for ours, theirs in zip(vectors, fp32["text_embedding"]):
        assert cosine(ours, theirs["embedding"]) > 0.98
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert "int8" in [p.parent.name for p in exports(tmp_path)]


MIXED = SENTENCES + ["Hi.", "A much longer sentence about the weather in Paris, which was rainy all week long.",
                     "Guitars.", "Two dogs run across a green field.", "Markets rallied after the announcement."]


async def test_two_threads_run_batches_in_one_thread_lanes_that_answer_as_torch(minilm_path, minilm_cache,
                                                                             monkeypatch):
    config = endpoint("text_embedding", minilm_path, threads=2)
    body = {"input": MIXED}
    torch_answer, _ = await answer(config, body, minilm_cache, engine="torch")
    async with serving(config, cache_dir=minilm_cache) as (client, backend):
        assert backend.running_on["lanes"] == 2
        # A batch of several inputs runs in parts side by side; a lone input on both threads.
        many, *single = await asyncio.gather(
            client.post("/_inference/text_embedding/local", json=body),
            *(client.post("/_inference/text_embedding/local", json={"input": text}) for text in MIXED))
    assert many.status_code == 200 and all(r.status_code == 200 for r in single)
    # Stopped (deleted, or scaled to zero in local mode): the lanes' threads and sessions go too.
    for _ in range(200):
        if not any(t.name.startswith("onnx-lane") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("onnx-lane")]
    for ours, lone, theirs in zip(many.json()["text_embedding"], single, torch_answer["text_embedding"]):
        assert cosine(ours["embedding"], theirs["embedding"]) > 0.99999
        assert cosine(lone.json()["text_embedding"][0]["embedding"], theirs["embedding"]) > 0.99999

    monkeypatch.setenv("KUBEINFER_CPU_LANES_MAX_MEMORY", "1mb")  # less than two copies of MiniLM
    without, running_on = await answer(config, body, minilm_cache)
    assert running_on["engine"] == "onnx" and "lanes" not in running_on
    for ours, theirs in zip(without["text_embedding"], torch_answer["text_embedding"]):
        assert cosine(ours["embedding"], theirs["embedding"]) > 0.99999


async def test_int8_below_its_cosine_floor_is_refused(tiny_models, tmp_path):
    with pytest.raises(ElasticsearchError) as caught:
        await answer(endpoint("text_embedding", tiny_models["embedding"]), {"input": "x"}, tmp_path,
                     quantization="int8", int8_min_cosine=1.0)
    assert "Refusing to serve model" in caught.value.reason
    assert "below the floor of 1.0 (KUBEINFER_INT8_MIN_COSINE)" in caught.value.reason


@pytest.mark.parametrize("task, model, body", [
    ("sparse_embedding", "sparse", {"input": ["the cat sat on the mat", "blue sky"]}),
    ("rerank", "rerank", {"query": "weather in paris", "input": ["the sun", "paris is a city", "rain today"]}),
])
async def test_sparse_and_rerank_on_onnx_answer_as_torch_does(tiny_models, tmp_path, task, model, body):
    config = endpoint(task, tiny_models[model])
    torch_answer, _ = await answer(config, body, tmp_path, engine="torch")
    onnx_answer, running_on = await answer(config, body, tmp_path, engine="onnx")
    assert running_on["engine"] == "onnx"
    if task == "rerank":
        assert [r["index"] for r in onnx_answer["rerank"]] == [r["index"] for r in torch_answer["rerank"]]
        for ours, theirs in zip(onnx_answer["rerank"], torch_answer["rerank"]):
            assert ours["relevance_score"] == pytest.approx(theirs["relevance_score"], abs=1e-5)
    else:
        for ours, theirs in zip(onnx_answer[task], torch_answer[task]):
            assert ours["embedding"].keys() == theirs["embedding"].keys()
            for token, weight in theirs["embedding"].items():
                assert ours["embedding"][token] == pytest.approx(weight, abs=1e-4)


async def test_a_broken_cached_export_falls_back_to_torch_with_a_log_line(tiny_models, tmp_path, caplog):
    config = endpoint("text_embedding", tiny_models["embedding"])
    await answer(config, {"input": "x"}, tmp_path)
    [export] = exports(tmp_path)
    export.write_bytes(b"not an onnx model")
    torch_answer, _ = await answer(config, {"input": "the cat"}, tmp_path, engine="torch")
    caplog.set_level(logging.WARNING, logger="model_server")
    fallback, running_on = await answer(config, {"input": "the cat"}, tmp_path)
    assert running_on == {"engine": "torch", "quantization": "none"}
    assert "ONNX export failed" in caplog.text and "serving with torch" in caplog.text
    assert fallback == torch_answer


@pytest.mark.parametrize("env, reason", [
    ({"KUBEINFER_RUNTIME": "tensorrt"}, "KUBEINFER_RUNTIME: Input should be 'auto', 'torch' or 'onnx'"),
    ({"KUBEINFER_QUANTIZATION": "int4"}, "KUBEINFER_QUANTIZATION: Input should be 'none' or 'int8'"),
    ({"KUBEINFER_RUNTIME": "torch", "KUBEINFER_QUANTIZATION": "int8"},
     "KUBEINFER_QUANTIZATION: Value error, int8 runs on ONNX Runtime, so KUBEINFER_RUNTIME must be auto or onnx"),
    ({"KUBEINFER_INT8_MIN_COSINE": "high"}, "KUBEINFER_INT8_MIN_COSINE: Input should be a valid number"),
])
def test_bad_engine_settings_fail_before_any_model_loads(tiny_models, monkeypatch, env, reason):
    from kubeinfer.config import SettingsError
    from model_server.backends.registry import create_backend

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        create_backend(endpoint("text_embedding", tiny_models["embedding"]))
    assert reason in str(caught.value)


async def test_a_model_the_torchscript_exporter_refuses_is_exported_with_dynamo(tiny_models, tmp_path, monkeypatch):
    import torch

    config = endpoint("text_embedding", tiny_models["embedding"])
    torch_answer, _ = await answer(config, {"input": SENTENCES}, tmp_path, engine="torch")
    real_export, exporters = torch.onnx.export, []

    def export(*args, dynamo=True, **kwargs):
        exporters.append("dynamo" if dynamo else "torchscript")
        if not dynamo:
            raise RuntimeError("unsupported operator")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    onnx_answer, running_on = await answer(config, {"input": SENTENCES}, tmp_path)
    assert exporters == ["torchscript", "dynamo"]
    assert running_on["engine"] == "onnx" and running_on["cosine"] >= 0.9999
    for ours, theirs in zip(onnx_answer["text_embedding"], torch_answer["text_embedding"]):
        assert cosine(ours["embedding"], theirs["embedding"]) > 0.99999
