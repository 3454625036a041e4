"""Models served from their ONNX export without torch (what the CPU server image runs):
the same answers as the torch engine, for each task type, once `kubeinfer export` or a
server with torch has written and checked the export."""

from __future__ import annotations

import math

import pytest

from endpoint_serving import serving
from kubeinfer.catalog import parse_endpoint
from kubeinfer.cli import main
from kubeinfer.errors import ElasticsearchError
from model_server.backends.local import backend as backend_module

SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "hello " * 600]
BODIES = {
    "text_embedding": {"input": SENTENCES},
    "sparse_embedding": {"input": SENTENCES},
    "rerank": {"input": SENTENCES, "query": "who plays the guitar?"},
}
KINDS = {"text_embedding": "embedding", "sparse_embedding": "sparse", "rerank": "rerank"}


def endpoint(task: str, model_id: str) -> object:
    return parse_endpoint("local", task, {"service": "elasticsearch", "service_settings": {
        "model_id": model_id, "num_allocations": 1, "num_threads": 1}})


async def answer(config, cache, **engine):
    async with serving(config, cache_dir=cache, engine=engine) as (client, backend):
        r = await client.post(f"/_inference/{config.task_type.value}/local", json=BODIES[config.task_type.value])
        assert r.status_code == 200, r.text
        return r.json(), backend.running_on


def close(a: list[float], b: list[float]) -> bool:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) > 0.9999


@pytest.mark.parametrize("task", ["text_embedding", "sparse_embedding", "rerank"])
async def test_an_exported_model_answers_as_torch_does(task, tiny_models, tmp_path, capsys, monkeypatch):
    model = str(tiny_models[KINDS[task]])
    assert main(["export", model, "--task-type", task, "--cache-dir", str(tmp_path)]) == 0
    assert '"engine": "onnx"' in capsys.readouterr().out
    assert len(list(tmp_path.glob("kubeinfer-onnx/*/*/*/fp32/serving.json"))) == 1
    config = endpoint(task, model)
    torch_answer, _ = await answer(config, tmp_path, engine="torch")
    monkeypatch.setattr(backend_module, "_has_torch", lambda: False)  # as in the CPU server image
    exported_answer, running_on = await answer(config, tmp_path)
    assert running_on["export"] == "cached" and running_on["engine"] == "onnx"
    if task == "text_embedding":
        for ours, theirs in zip(exported_answer[task], torch_answer[task]):
            assert close(ours["embedding"], theirs["embedding"])
    elif task == "sparse_embedding":
        for ours, theirs in zip(exported_answer[task], torch_answer[task]):
            assert ours["is_truncated"] == theirs["is_truncated"]
            tokens = sorted(set(ours["embedding"]) | set(theirs["embedding"]))
            assert close([ours["embedding"].get(t, 0.0) for t in tokens],
                         [theirs["embedding"].get(t, 0.0) for t in tokens])
        assert exported_answer[task][2]["is_truncated"]
    else:
        assert [r["index"] for r in exported_answer[task]] == [r["index"] for r in torch_answer[task]]
        for ours, theirs in zip(exported_answer[task], torch_answer[task]):
            assert abs(ours["relevance_score"] - theirs["relevance_score"]) < 1e-4


async def test_a_server_with_torch_exports_and_marks_the_export_servable(tiny_models, tmp_path):
    _, running_on = await answer(endpoint("text_embedding", str(tiny_models["embedding"])), tmp_path)
    assert running_on["engine"] == "onnx" and "export" not in running_on
    assert len(list(tmp_path.glob("kubeinfer-onnx/*/*/*/fp32/serving.json"))) == 1


async def test_a_server_without_torch_refuses_a_model_with_no_export(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(backend_module, "_has_torch", lambda: False)
    config = endpoint("text_embedding", str(tiny_models["embedding"]))
    with pytest.raises(ElasticsearchError, match="kubeinfer export"):
        async with serving(config, cache_dir=tmp_path):
            pass
