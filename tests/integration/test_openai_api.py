"""The OpenAI-compatible API of local mode, driven by the official ``openai`` SDK, and by the
requests Elasticsearch's own ``openai`` service sends when its ``url`` points at kubeinfer.

``kubeinfer local`` runs in its own process; its endpoints call fake providers on real
ports that record what they received.
"""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest
from fake_providers import Reply
from local_mode import LocalMode, ServedFake, openai_fake


def tool_call_stream() -> Reply:
    """OpenAI's streamed answer that calls a tool, arguments in two pieces, with usage."""
    def chunk(delta, finish=None):
        return (None, json.dumps({"id": "chatcmpl-t", "object": "chat.completion.chunk", "model": "gpt-4o",
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"ci'}}
    return Reply(events=[
        chunk({"role": "assistant", "tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        (None, json.dumps({"id": "chatcmpl-t", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
                           "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})),
        (None, "[DONE]"),
    ])


@pytest.fixture(scope="module")
def provider():
    fake = openai_fake()
    plain = fake._routes["/v1/chat/completions"][0]
    fake.on("/v1/chat/completions", lambda r: tool_call_stream() if r.json.get("tools") else plain(r))
    # Cohere's rerank: the later a document, the higher it scores.
    fake.on("/v1/rerank", lambda r: Reply(json={"id": "r", "results": [
        {"index": i, "relevance_score": round(0.1 * (i + 1), 2)} for i in range(len(r.json["documents"]))]}))
    with ServedFake(fake) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory, provider):
    root = tmp_path_factory.mktemp("openai-api")
    with LocalMode(state_dir=root / "state") as running:
        openai_settings = {"api_key": "sk-provider", "url": f"{provider.url}/v1"}
        for task, name, model in (("text_embedding", "emb", "text-embedding-3-small"),
                                  ("completion", "writer", "gpt-4o-mini"),
                                  ("chat_completion", "assistant", "gpt-4o")):
            created = running.client.put(f"/_inference/{task}/{name}", json={
                "service": "openai", "service_settings": {**openai_settings, "model_id": model}})
            assert created.status_code == 200, created.text
        created = running.client.put("/_inference/rerank/ranker", json={
            "service": "cohere", "service_settings": {"api_key": "sk-cohere", "model_id": "rerank-v3.5",
                                                      "url": provider.url}})
        assert created.status_code == 200, created.text
        yield running


@pytest.fixture
def client(local):
    return openai.OpenAI(base_url=f"{local.url}/v1", api_key="sk-anything", max_retries=0)


def test_sdk_embeddings_in_float_and_in_the_sdk_default_base64(client, provider):
    explicit = client.embeddings.create(model="emb", input=["hello", "bonjour!"], encoding_format="float")
    assert [d.embedding for d in explicit.data] == [[5.0, 0.5, -0.25], [8.0, 0.5, -0.25]]
    assert [d.index for d in explicit.data] == [0, 1] and explicit.model == "emb"
    # The SDK asks for base64 when the caller names no format, and decodes it.
    default = client.embeddings.create(model="emb", input="hello")
    assert default.data[0].embedding == [5.0, 0.5, -0.25]
    assert provider.fake.to("/v1/embeddings")[-1].json["input"] == ["hello"]


def test_base64_embeddings_are_little_endian_float32(local):
    response = local.client.post("/v1/embeddings", json={"model": "emb", "input": "abc", "encoding_format": "base64"})
    assert response.status_code == 200
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (3.0, 0.5, -0.25)


def test_dimensions_must_match_what_the_endpoint_answers(client):
    assert len(client.embeddings.create(model="emb", input="x", dimensions=3, encoding_format="float")
               .data[0].embedding) == 3
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="emb", input="x", dimensions=2)
    assert error.value.body["param"] == "dimensions"


def test_sdk_chat_completion_on_a_completion_endpoint_streams_and_not(client, provider):
    answer = client.chat.completions.create(model="writer", messages=[{"role": "user", "content": "Say hello"}])
    assert answer.choices[0].message.content == "Bonjour!"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason == "stop"
    assert provider.fake.to("/v1/chat/completions")[-1].json["messages"] == [
        {"role": "user", "content": "Say hello"}]
    stream = client.chat.completions.create(model="writer", messages=[{"role": "user", "content": "Say hello"}],
                                            stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Bonjour!"
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    assert provider.fake.to("/v1/chat/completions")[-1].json["stream"] is True


def test_sdk_chat_completion_streams_from_a_chat_completion_endpoint(client, provider):
    stream = client.chat.completions.create(
        model="assistant", messages=[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Say hello in French"}],
        stream=True, max_tokens=16, temperature=0.2)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Bonjour!"
    sent = provider.fake.to("/v1/chat/completions")[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_completion_tokens"] == 16 and sent["temperature"] == 0.2 and sent["model"] == "gpt-4o"


def test_tools_pass_through_to_the_provider_and_tool_calls_come_back(client, provider):
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    answer = client.chat.completions.create(model="assistant", tools=tools, tool_choice="auto",
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
    sent = provider.fake.to("/v1/chat/completions")[-1].json
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    [call] = answer.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "weather", '{"city":"Paris"}')
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage.total_tokens == 18
    stream = client.chat.completions.create(model="assistant", tools=tools, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.tool_calls[0].function.arguments for c in chunks
              if c.choices and c.choices[0].delta.tool_calls]
    assert "".join(pieces) == '{"city":"Paris"}'
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 11


def test_tools_are_refused_by_a_completion_endpoint(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="writer", messages=[{"role": "user", "content": "hi"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    assert error.value.body["param"] == "tools"


def test_sdk_lists_the_endpoints_as_models_with_their_task_types(client):
    models = {m.id: m for m in client.models.list()}
    assert {"emb", "writer", "assistant", "ranker"} <= set(models)
    assert models["emb"].owned_by == "kubeinfer"
    assert models["ranker"].model_extra["task_type"] == "rerank"
    assert client.models.retrieve("assistant").model_extra["task_type"] == "chat_completion"


def test_rerank_ranks_in_the_cohere_and_jina_shape(local, provider):
    response = local.client.post("/v1/rerank", json={
        "model": "ranker", "query": "capital of France",
        "documents": ["Berlin", {"text": "Paris"}, "Madrid"], "top_n": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "ranker"
    assert body["results"] == [{"index": 2, "relevance_score": 0.3, "document": {"text": "Madrid"}},
                               {"index": 1, "relevance_score": 0.2, "document": {"text": "Paris"}}]
    sent = provider.fake.to("/v1/rerank")[-1].json
    assert sent["query"] == "capital of France" and sent["documents"] == ["Berlin", "Paris", "Madrid"]
    bare = local.client.post("/v1/rerank", json={"model": "ranker", "query": "q", "documents": ["a", "b"],
                                                 "return_documents": False}).json()
    assert bare["results"] == [{"index": 1, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.1}]


def test_errors_take_openai_shape_and_status(client, local):
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="nope", input="x")
    assert missing.value.body["code"] == "model_not_found"
    assert set(missing.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as wrong_task:
        client.embeddings.create(model="writer", input="x")
    assert wrong_task.value.body["param"] == "model"
    response = local.client.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    unknown = local.client.post("/v1/audio/speech", json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


# ---- what Elasticsearch's openai service sends, with url pointing at kubeinfer ----------------

def test_elasticsearch_openai_text_embedding_request(local):
    # OpenAiEmbeddingsRequestEntity: input, model (the model_id: here the inference id), user,
    # and dimensions only when set by the user; a bearer key. Elasticsearch reads data[].embedding.
    response = local.client.post("/v1/embeddings", headers={"Authorization": "Bearer es-key"},
                                 json={"input": ["first", "second text"], "model": "emb", "user": "es"})
    assert response.status_code == 200, response.text
    assert [d["embedding"] for d in response.json()["data"]] == [[5.0, 0.5, -0.25], [11.0, 0.5, -0.25]]


def test_elasticsearch_openai_completion_requests(local):
    # OpenAiUnifiedChatCompletionRequestEntity for completion: messages, model, n=1, stream;
    # Elasticsearch reads choices[0].message.content, or each chunk's choices[].delta.content.
    body = {"messages": [{"role": "user", "content": "Say hello"}], "model": "writer", "n": 1, "stream": False}
    answer = local.client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Bonjour!"
    body.update(stream=True, stream_options={"include_usage": True})
    with local.client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Bonjour!"
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]


def test_elasticsearch_openai_service_can_use_kubeinfer_as_its_provider(local):
    # kubeinfer's own openai service sends what Elasticsearch's does: point one at local mode.
    created = local.client.put("/_inference/text_embedding/relay", json={"service": "openai", "service_settings": {
        "api_key": "sk-relay", "model_id": "emb", "url": f"{local.url}/v1/embeddings"}})
    assert created.status_code == 200, created.text
    answer = local.client.post("/_inference/text_embedding/relay", json={"input": ["hello"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text_embedding": [{"embedding": [5.0, 0.5, -0.25]}]}
