"""watsonx.ai: embeddings with an IAM token exchanged from the API key and cached until
shortly before it expires."""

from __future__ import annotations

from fake_providers import FakeProvider, Received, Reply, backend_for, post_through_server
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType

KEY = "ibm-api-key-123456"
IAM = "https://iam.test/identity/token"
PATH = "/ml/v1/text/embeddings"
SETTINGS = {"api_key": KEY, "url": "https://us-south.ml.test", "api_version": "2024-05-02",
            "model_id": "ibm/slate-30m-english-rtrvr", "project_id": "p-1"}


def iam(expires_in: int):
    issued = []

    def handle(received: Received) -> Reply:
        assert received.headers["content-type"] == "application/x-www-form-urlencoded"
        assert received.form == {"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": KEY}
        issued.append(f"iam-{len(issued) + 1}")
        return Reply(json={"access_token": issued[-1], "refresh_token": "not_supported", "token_type": "Bearer",
                           "expires_in": expires_in, "expiration": 1_900_000_000})

    return handle, issued


EMBEDDINGS = Reply(json={"model_id": "ibm/slate-30m-english-rtrvr", "input_token_count": 2,
                         "results": [{"embedding": [0.5, 0.25]}, {"embedding": [0.125, 1.0]}]})


async def test_embeddings_through_the_server_with_an_iam_token():
    handle, issued = iam(3600)
    fake = FakeProvider().on("/identity/token", handle).on(PATH, EMBEDDINGS)
    backend = backend_for(fake, "watsonxai", "text_embedding", SETTINGS, iam_url=IAM)
    response = await post_through_server(backend, {"input": ["a", "b"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [0.5, 0.25]}, {"embedding": [0.125, 1.0]}]}
    [call] = fake.to(PATH)
    assert call.headers["authorization"] == "Bearer iam-1"
    assert issued == ["iam-1"]


async def test_embeddings_with_a_cached_iam_token():
    handle, issued = iam(3600)
    fake = FakeProvider().on("/identity/token", handle).on(PATH, EMBEDDINGS)
    backend = backend_for(fake, "watsonxai", "text_embedding", SETTINGS, iam_url=IAM)
    await backend.start()
    for _ in range(3):
        answer = render(await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a", "b"], timeout=5)))
    await backend.close()
    assert answer == {"text_embedding": [{"embedding": [0.5, 0.25]}, {"embedding": [0.125, 1.0]}]}
    assert issued == ["iam-1"]
    calls = fake.to(PATH)
    assert len(calls) == 3
    assert calls[0].host == "us-south.ml.test"
    assert calls[0].query == {"version": "2024-05-02"}
    assert calls[0].headers["authorization"] == "Bearer iam-1"
    assert calls[0].json == {"inputs": ["a", "b"], "model_id": "ibm/slate-30m-english-rtrvr", "project_id": "p-1"}


async def test_iam_token_near_expiry_is_exchanged_again():
    handle, issued = iam(60)
    fake = FakeProvider().on("/identity/token", handle).on(PATH, EMBEDDINGS)
    backend = backend_for(fake, "watsonxai", "text_embedding", SETTINGS, iam_url=IAM)
    await backend.start()
    for _ in range(2):
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a", "b"], timeout=5))
    await backend.close()
    assert issued == ["iam-1", "iam-2"]
    assert [c.headers["authorization"] for c in fake.to(PATH)] == ["Bearer iam-1", "Bearer iam-2"]


async def test_rejected_api_key_is_a_401_without_the_key():
    fake = FakeProvider().on("/identity/token", Reply(400, {
        "errorCode": "BXNIM0415E", "errorMessage": f"Provided API key could not be found: {KEY}"}))
    backend = backend_for(fake, "watsonxai", "text_embedding", SETTINGS, iam_url=IAM)
    await backend.start()
    try:
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    except Exception as exc:  # noqa: BLE001 - asserted below
        error = exc
    await backend.close()
    assert error.status == 400
    assert "Provided API key could not be found" in error.reason
    assert KEY not in error.reason


async def test_rerank_through_the_server_with_an_iam_token():
    handle, _ = iam(3600)
    answer = {"model_id": "cross-encoder/ms-marco-minilm-l-12-v2", "input_token_count": 9, "query": "which",
              "results": [{"index": 1, "score": 0.9, "input": {"text": "world"}},
                          {"index": 0, "score": 0.2, "input": {"text": "hello"}}]}
    fake = FakeProvider().on("/identity/token", handle).on("/ml/v1/text/rerank", Reply(json=answer))
    settings = {**SETTINGS, "model_id": "cross-encoder/ms-marco-minilm-l-12-v2"}
    backend = backend_for(fake, "watsonxai", "rerank", settings,
                          {"return_documents": True, "top_n": 2, "truncate_input_tokens": 500}, iam_url=IAM)
    response = await post_through_server(backend, {"input": ["hello", "world"], "query": "which"})
    assert response.status_code == 200, response.text
    assert response.json() == {"rerank": [{"index": 1, "relevance_score": 0.9, "text": "world"},
                                          {"index": 0, "relevance_score": 0.2, "text": "hello"}]}
    [call] = fake.to("/ml/v1/text/rerank")
    assert call.query == {"version": "2024-05-02"} and call.headers["authorization"] == "Bearer iam-1"
    assert call.json == {
        "model_id": "cross-encoder/ms-marco-minilm-l-12-v2", "project_id": "p-1", "query": "which",
        "inputs": [{"text": "hello"}, {"text": "world"}],
        "parameters": {"return_options": {"inputs": True, "top_n": 2}, "truncate_input_tokens": 500},
    }


async def test_completion_through_the_chat_api():
    handle, _ = iam(3600)
    answer = {"id": "chat-1", "model_id": "ibm/granite-3-8b-instruct", "created": 1,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}]}
    fake = FakeProvider().on("/identity/token", handle).on("/ml/v1/text/chat", Reply(json=answer))
    settings = {**SETTINGS, "model_id": "ibm/granite-3-8b-instruct"}
    backend = backend_for(fake, "watsonxai", "completion", settings, iam_url=IAM)
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "Hi!"}]}
    [call] = fake.to("/ml/v1/text/chat")
    assert call.json == {"messages": [{"role": "user", "content": "hello"}],
                         "model_id": "ibm/granite-3-8b-instruct", "project_id": "p-1"}
