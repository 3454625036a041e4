"""Local mode when things go wrong around it: a provider refusing at start, state files
that are not endpoints, a provider that hangs, an endpoint deleted under its requests.
Driven over HTTP, as a user meets it: the process keeps serving and says what is wrong.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from fake_providers import Reply
from local_mode import LocalMode, ServedFake, openai_embeddings, openai_fake
from tiny_bert import build_tiny_bert


def embedding_body(url: str, api_key: str = "sk-resilient") -> dict:
    return {"service": "openai", "service_settings": {
        "api_key": api_key, "model_id": "text-embedding-3-small", "url": f"{url}/v1"}}


def test_stored_endpoint_whose_provider_refuses_at_start_is_kept_listed_and_deletable(tmp_path):
    fake = openai_fake()
    healthy = fake._routes["/v1/embeddings"][0]
    down = {"now": False}
    fake.on("/v1/embeddings", lambda r: Reply(401, {"error": {"message": "Incorrect API key provided"}})
            if down["now"] else healthy(r))
    state = tmp_path / "state"
    with ServedFake(fake) as provider:
        with LocalMode(state_dir=state) as first:
            assert first.client.put("/_inference/text_embedding/kept",
                                    json=embedding_body(provider.url)).status_code == 200
        down["now"] = True
        with LocalMode(state_dir=state) as second:
            listed = second.client.get("/_inference").json()["endpoints"]
            assert [e["inference_id"] for e in listed if not e["inference_id"].startswith(".")] == ["kept"]
            assert second.client.get("/_inference/text_embedding/kept").status_code == 200
            answer = second.client.post("/_inference/text_embedding/kept", json={"input": "abc"})
            assert answer.status_code == 409
            error = answer.json()["error"]
            assert error["type"] == "status_exception"
            assert "[kept] is not available" in error["reason"] and "Incorrect API key" in error["reason"]
            assert second.client.delete("/_inference/kept").status_code == 200
            assert second.client.get("/_inference/kept").status_code == 404
    assert not (state / "endpoints" / "kept.json").exists()


BROKEN_STATE_FILES = {
    "a-list": b"[1, 2, 3]",
    "deep-nesting": b"[" * 5000 + b"]" * 5000,
    "empty": b"",
    "not-utf8": b"\xff\xfe garbage",
    "missing-fields": b'{"inference_id": "x"}',
    "wrong-types": b'{"inference_id": ["x"], "task_type": {"a": 1}, "service": 3}',
    "a-string": b'"just a string"',
}


def test_state_files_that_are_not_endpoints_are_skipped_and_the_rest_start(tmp_path):
    fake = openai_fake()
    state = tmp_path / "state"
    with ServedFake(fake) as provider:
        with LocalMode(state_dir=state) as first:
            assert first.client.put("/_inference/text_embedding/good",
                                    json=embedding_body(provider.url)).status_code == 200
        for name, content in BROKEN_STATE_FILES.items():
            (state / "endpoints" / f"{name}.json").write_bytes(content)
        # A write cut short by a full disk leaves a temporary file.
        (state / "endpoints" / "half.tmp").write_bytes(b"")
        with LocalMode(state_dir=state) as second:
            listed = [e["inference_id"] for e in second.client.get("/_inference").json()["endpoints"]]
            # Elasticsearch's preconfigured endpoints (a leading dot) are always listed.
            assert [i for i in listed if not i.startswith(".")] == ["good"]
            for name in BROKEN_STATE_FILES:
                assert f"skipping stored endpoint {name}.json" in second.text
            assert "sk-resilient" not in second.text
    assert not (state / "endpoints" / "half.tmp").exists()


def test_a_hanging_provider_holds_up_only_its_own_create(tmp_path):
    fake = openai_fake()
    fake.on("/slow/v1/embeddings", Reply(json=openai_embeddings([1.0]), delay=6.0))
    with ServedFake(fake) as provider, LocalMode(state_dir=tmp_path / "state") as local:
        hanging: dict = {}

        def create_hanging():
            with httpx.Client(base_url=local.url, timeout=60) as client:
                hanging["response"] = client.put("/_inference/text_embedding/hanging?timeout=30s",
                                                 json=embedding_body(f"{provider.url}/slow"))

        thread = threading.Thread(target=create_hanging)
        thread.start()
        try:
            # Wait until the hanging create has reached the provider.
            while not fake.to("/slow/v1/embeddings"):
                thread.join(0.05)
            assert local.client.put("/_inference/text_embedding/other",
                                    json=embedding_body(provider.url)).status_code == 200
            assert local.client.delete("/_inference/other").status_code == 200
            # Both answered while the provider still holds the first create.
            assert thread.is_alive() and "response" not in hanging
            # The id being created is taken meanwhile.
            taken = local.client.put("/_inference/text_embedding/hanging", json=embedding_body(provider.url))
            assert taken.json()["error"]["type"] == "resource_already_exists_exception"
        finally:
            thread.join(60)
        assert hanging["response"].status_code == 200


def test_deleting_a_local_model_fails_its_requests_in_flight_at_once(tmp_path):
    model = build_tiny_bert(tmp_path / "model", "base", sentence_transformers={})
    # Requests wait long for company in a batch: one is surely in flight when the delete comes.
    env = {"KUBEINFER_MAX_BATCH_WAIT_MS": "120000"}
    with LocalMode(state_dir=tmp_path / "state", env=env) as local:
        created = local.client.put("/_inference/text_embedding/tiny", json={
            "service": "elasticsearch",
            "service_settings": {"model_id": str(model), "num_allocations": 1, "num_threads": 1}})
        assert created.status_code == 200, created.text
        # A batch of eight makes the next single input wait for seven more.
        assert local.client.post("/_inference/text_embedding/tiny", json={"input": ["a b"] * 8}).status_code == 200
        result: dict = {}

        def infer():
            with httpx.Client(base_url=local.url, timeout=100) as client:
                result["response"] = client.post("/_inference/text_embedding/tiny?timeout=-1", json={"input": "x"})

        thread = threading.Thread(target=infer)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()
        assert local.client.delete("/_inference/tiny").status_code == 200
        thread.join(60)
        assert not thread.is_alive()
        response = result["response"]
        assert response.status_code == 409
        assert "stopped" in response.json()["error"]["reason"]
