"""Local mode through HTTP, as a user runs it: ``kubeinfer local`` in its own process,
endpoints from a manifest folder and from PUT, an OpenAI-compatible fake provider on a
real port that records what it received.
"""

from __future__ import annotations

import json

import pytest
from fake_providers import Reply
from local_mode import API_KEY, LocalMode, ServedFake, openai_embeddings, openai_fake

CHAT_MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: chat
spec:
  taskType: completion
  service: openai
  serviceSettings:
    model_id: gpt-4o-mini
    url: {url}/v1
    api_key:
      secretKeyRef: {{name: openai, key: api-key}}
"""


@pytest.fixture(scope="module")
def provider():
    fake = openai_fake()
    # A key the provider refuses, in OpenAI's error format.
    embeddings = fake._routes["/v1/embeddings"][0]
    fake.on("/v1/embeddings", lambda r: Reply(401, {"error": {
        "message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if r.headers.get("authorization") == "Bearer sk-refused"
        else Reply(json=openai_embeddings([1.0]), delay=2.0) if r.headers.get("authorization") == "Bearer sk-slow"
        else embeddings(r))
    with ServedFake(fake) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory, provider):
    root = tmp_path_factory.mktemp("local")
    (root / "manifests").mkdir()
    (root / "manifests" / "chat.yaml").write_text(CHAT_MANIFEST.format(url=provider.url))
    (root / "secrets" / "openai").mkdir(parents=True)
    (root / "secrets" / "openai" / "api-key").write_text(API_KEY + "\n")
    with LocalMode("-f", str(root / "manifests"), "--secrets-dir", str(root / "secrets"),
                   state_dir=root / "state") as running:
        yield running


def embedding_body(provider, api_key="sk-user-key", **settings):
    return {"service": "openai", "service_settings": {
        "api_key": api_key, "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1", **settings}}


def error_of(response):
    body = response.json()
    assert body["error"]["root_cause"][0]["type"] == body["error"]["type"]
    return response.status_code, body["error"]["type"], body["error"]["reason"]


def test_root_answers_as_elasticsearch_does(local):
    response = local.client.get("/")
    assert response.status_code == 200
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    body = response.json()
    assert body["version"]["number"].startswith("9.")
    assert body["tagline"] == "You Know, for Search"


def test_start_up_prints_curl_commands_for_each_endpoint(local):
    assert f"curl -s -X POST {local.url}/_inference/completion/chat" in local.text
    assert f"curl -s -N -X POST {local.url}/_inference/completion/chat/_stream" in local.text


def test_manifest_endpoint_resolves_secret_from_secrets_dir(local, provider):
    before = len(provider.fake.to("/v1/chat/completions"))
    response = local.client.post("/_inference/completion/chat", json={"input": "Say hello in French"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "Bonjour!"}]}
    sent = provider.fake.to("/v1/chat/completions")[before:]
    assert sent[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert sent[-1].json["messages"] == [{"role": "user", "content": "Say hello in French"}]
    view = local.client.get("/_inference/chat").json()["endpoints"][0]
    assert "api_key" not in view["service_settings"]
    assert API_KEY not in json.dumps(view)


def test_streamed_completion_arrives_as_server_sent_events(local, provider):
    with local.client.stream("POST", "/_inference/completion/chat/_stream", json={"input": "hello"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    deltas = [json.loads(d)["completion"][0]["delta"] for d in data[:-1]]
    assert "".join(deltas) == "Bonjour!"
    assert provider.fake.to("/v1/chat/completions")[-1].json["stream"] is True


def test_chat_completion_streams_unified_chunks_in_local_mode(local, provider):
    body = {"service": "openai", "service_settings": {
        "api_key": "sk-chat-key", "model_id": "gpt-4o", "url": f"{provider.url}/v1"}}
    created = local.client.put("/_inference/chat_completion/local-chat", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["task_type"] == "chat_completion"
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello in French"}]}],
            "max_completion_tokens": 16}
    with local.client.stream("POST", "/_inference/chat_completion/local-chat/_stream", json=chat) as response:
        assert response.status_code == 200
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Bonjour!"
    sent = provider.fake.to("/v1/chat/completions")[-1]
    assert sent.headers["authorization"] == "Bearer sk-chat-key"
    assert sent.json["messages"] == chat["messages"] and sent.json["max_completion_tokens"] == 16
    assert sent.json["stream_options"] == {"include_usage": True}
    # Not a plain inference endpoint, as in Elasticsearch.
    refused = local.client.post("/_inference/chat_completion/local-chat", json={"input": "hi"})
    assert refused.status_code == 400
    assert "please use the _inference/chat_completion/local-chat/_stream URL" in refused.json()["error"]["reason"]


def test_create_answers_the_endpoint_without_secrets_and_with_defaults(local, provider):
    response = local.client.put("/_inference/text_embedding/emb-create", json=embedding_body(provider))
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["inference_id"] == "emb-create"
    assert created["task_type"] == "text_embedding"
    assert created["service"] == "openai"
    settings = created["service_settings"]
    assert "api_key" not in settings and "sk-user-key" not in response.text
    assert settings["rate_limit"] == {"requests_per_minute": 3000}
    # Learnt from the provider's answer when the endpoint was validated, as Elasticsearch does.
    assert settings["dimensions"] == 3
    answer = local.client.post("/_inference/text_embedding/emb-create", json={"input": ["abcd", "ef"]})
    assert answer.json() == {"text_embedding": [{"embedding": [4.0, 0.5, -0.25]}, {"embedding": [2.0, 0.5, -0.25]}]}
    assert provider.fake.to("/v1/embeddings")[-1].headers["authorization"] == "Bearer sk-user-key"


@pytest.mark.parametrize("path,body,expected", [
    ("/_inference/text_embedding/bad-1", {"service": "no-such-service", "service_settings": {}},
     (400, "status_exception", "Unknown service [no-such-service] for model [bad-1]")),
    ("/_inference/rerank/bad-2", {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}},
     (400, "status_exception", "The [openai] service does not support task type [rerank]")),
    ("/_inference/text_embedding/bad-3", {"service": "openai", "service_settings": {"api_key": "k"}},
     (400, "validation_exception",
      "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];")),
    ("/_inference/text_embedding/bad-4",
     {"service": "openai", "task_type": "completion", "service_settings": {"api_key": "k", "model_id": "m"}},
     (400, "status_exception", "Cannot resolve conflicting task_type parameter in the request URL [text_embedding] "
                               "and the request body [completion]")),
    ("/_inference/bad-5", {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}},
     (400, "status_exception", "model is missing required setting [task_type]")),
    ("/_inference/text_embedding/bad-6",
     {"service": "openai", "service_settings": {"api_key": "k", "model_id": "m", "colour": "blue"}},
     (400, "status_exception",
      "Model configuration contains settings [{colour=blue}] unknown to the [openai] service")),
])
def test_invalid_create_is_rejected_with_elasticsearch_error_and_changes_nothing(local, path, body, expected):
    response = local.client.put(path, json=body)
    assert error_of(response) == expected
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    inference_id = path.rsplit("/", 1)[1]
    assert local.client.get(f"/_inference/{inference_id}").status_code == 404


def test_create_with_broken_json_is_a_parse_exception(local):
    response = local.client.put("/_inference/text_embedding/broken", content=b'{"service": "openai",',
                                headers={"Content-Type": "application/json"})
    status, kind, _ = error_of(response)
    assert (status, kind) == (400, "parse_exception")
    empty = local.client.put("/_inference/text_embedding/broken")
    assert error_of(empty) == (400, "parse_exception", "request body is required")


def test_create_with_an_unknown_task_type_is_rejected(local, provider):
    response = local.client.put("/_inference/embeddingz/x-1", json=embedding_body(provider))
    status, _, reason = error_of(response)
    assert status == 400 and reason == "Unknown task_type [embeddingz]"


def test_create_that_the_provider_refuses_fails_and_leaves_nothing(local, provider):
    body = embedding_body(provider, api_key="sk-refused")
    response = local.client.put("/_inference/text_embedding/refused", json=body)
    assert response.status_code >= 400
    assert "error" in response.json() and "sk-refused" not in response.text
    assert local.client.get("/_inference/refused").status_code == 404


def test_create_that_is_not_ready_within_the_timeout_fails_and_leaves_nothing(local, provider):
    response = local.client.put("/_inference/text_embedding/slow?timeout=200ms",
                                json=embedding_body(provider, api_key="sk-slow"))
    assert error_of(response) == (
        408, "status_exception", "Timed out after [0.2s] waiting for inference endpoint [slow] to start")
    assert local.client.get("/_inference/slow").status_code == 404


def test_duplicate_id_is_rejected_as_elasticsearch_does(local, provider):
    assert local.client.put("/_inference/text_embedding/dup", json=embedding_body(provider)).status_code == 200
    again = local.client.put("/_inference/text_embedding/dup", json=embedding_body(provider, api_key="sk-other"))
    assert error_of(again) == (400, "resource_already_exists_exception", "Inference endpoint [dup] already exists")


def test_put_without_task_type_in_the_path_takes_it_from_the_body(local, provider):
    body = {**embedding_body(provider), "task_type": "text_embedding"}
    response = local.client.put("/_inference/no-path-task", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["task_type"] == "text_embedding"


def test_get_in_every_form(local, provider):
    assert local.client.put("/_inference/text_embedding/get-me", json=embedding_body(provider)).status_code == 200
    ids = lambda r: [e["inference_id"] for e in r.json()["endpoints"]]  # noqa: E731
    everything = local.client.get("/_inference")
    assert "get-me" in ids(everything) and "chat" in ids(everything)
    assert ids(everything) == sorted(ids(everything))
    assert ids(local.client.get("/_inference/_all")) == ids(everything)
    embeddings = ids(local.client.get("/_inference/text_embedding/_all"))
    assert "get-me" in embeddings and "chat" not in embeddings
    assert ids(local.client.get("/_inference/completion/_all")) == ["chat"]
    assert ids(local.client.get("/_inference/get-me")) == ["get-me"]
    one = local.client.get("/_inference/text_embedding/get-me").json()["endpoints"]
    assert one[0]["service_settings"]["model_id"] == "text-embedding-3-small"
    assert error_of(local.client.get("/_inference/completion/get-me")) == (
        400, "status_exception",
        "Requested task type [completion] does not match the inference endpoint's task type [text_embedding]")
    assert error_of(local.client.get("/_inference/nothing-here")) == (
        404, "resource_not_found_exception", "Inference endpoint not found [nothing-here]")


def test_update_changes_settings_and_rotates_the_secret(local, provider):
    body = embedding_body(provider)
    body["task_settings"] = {"user": "first"}
    assert local.client.put("/_inference/text_embedding/upd", json=body).status_code == 200
    response = local.client.put("/_inference/text_embedding/upd/_update", json={
        "service_settings": {"api_key": "sk-rotated"}, "task_settings": {"user": "second"}})
    assert response.status_code == 200, response.text
    assert response.json()["task_settings"] == {"user": "second"}
    assert "sk-rotated" not in response.text
    local.client.post("/_inference/text_embedding/upd", json={"input": "x"})
    sent = provider.fake.to("/v1/embeddings")[-1]
    assert sent.headers["authorization"] == "Bearer sk-rotated"
    assert sent.json["user"] == "second"
    assert local.client.get("/_inference/upd").json()["endpoints"][0]["task_settings"] == {"user": "second"}
    # Without the task type in the path, and for an endpoint that does not exist.
    assert local.client.put("/_inference/upd/_update", json={"task_settings": {"user": "third"}}).status_code == 200
    assert error_of(local.client.put("/_inference/missing/_update", json={"task_settings": {}})) == (
        404, "resource_not_found_exception", "The inference endpoint [missing] does not exist and cannot be updated")


def test_delete_removes_the_endpoint(local, provider):
    assert local.client.put("/_inference/text_embedding/del-me", json=embedding_body(provider)).status_code == 200
    dry = local.client.delete("/_inference/text_embedding/del-me", params={"dry_run": "true"})
    assert dry.json() == {"acknowledged": False, "pipelines": [], "indexes": []}
    assert local.client.get("/_inference/del-me").status_code == 200
    assert error_of(local.client.delete("/_inference/completion/del-me"))[0] == 400
    response = local.client.delete("/_inference/text_embedding/del-me")
    assert response.json() == {"acknowledged": True, "pipelines": [], "indexes": []}
    assert local.client.get("/_inference/del-me").status_code == 404
    assert local.client.post("/_inference/text_embedding/del-me", json={"input": "x"}).status_code == 404
    assert error_of(local.client.delete("/_inference/del-me")) == (
        404, "resource_not_found_exception", "Inference endpoint not found [del-me]")
