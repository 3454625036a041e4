"""The HTTP layer of the model server, through HTTP: Elasticsearch's request parsing,
response and error shapes, probes and metrics.

The backend here records what it is asked and answers in Elasticsearch's shape; the
real backends have their own tests. Only HTTP-layer behaviour is checked here.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from model_server.api.app import create_app
from model_server.api.store import SingleEndpointStore
from model_server.backends.base import Backend, InferenceRequest
from model_server.backends.results import InferenceResult, RankedDocument, Ranking, TextEmbeddings
from kubeinfer.catalog import parse_endpoint


class RecordingBackend(Backend):
    """Answers each input with a vector made of its length, and records every request."""

    def __init__(self, config, *, delay: float = 0.0, ready: bool = True) -> None:
        super().__init__(config)
        self.requests: list[InferenceRequest] = []
        self.delay = delay
        self._ready = ready

    @property
    def ready(self) -> bool:
        return self._ready

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.task_type.value == "rerank":
            return Ranking([RankedDocument(i, 1.0 / (i + 1)) for i in range(len(request.input))])
        return TextEmbeddings([[float(len(text)), 1.0] for text in request.input])


def embedding_config(inference_id: str = "my-e5"):
    return parse_endpoint(inference_id, "text_embedding",
                          {"service": "elasticsearch", "service_settings": {
                              "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}})


def rerank_config():
    return parse_endpoint("my-rerank", "rerank", {
        "service": "elasticsearch", "service_settings": {"model_id": ".rerank-v1", "num_allocations": 1, "num_threads": 1},
        "task_settings": {"return_documents": False},
    })


def client_for(backend: Backend) -> httpx.AsyncClient:
    store = SingleEndpointStore(backend.config, backend)
    app = create_app(store)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def assert_es_error(response: httpx.Response, status: int, type_: str, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    body = response.json()
    assert body["status"] == status
    assert body["error"]["type"] == type_
    assert body["error"]["root_cause"] == [{"type": type_, "reason": body["error"]["reason"]}]
    if reason is not None:
        assert body["error"]["reason"] == reason
    return body


async def test_embedding_request_answers_es_json_and_reaches_backend_as_parsed():
    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as client:
        r = await client.post("/_inference/text_embedding/my-e5?timeout=5s",
                              json={"input": ["hello", "hi"], "input_type": "SEARCH"})
    assert r.status_code == 200
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    assert r.json() == {"text_embedding": [{"embedding": [5.0, 1.0]}, {"embedding": [2.0, 1.0]}]}
    [seen] = backend.requests
    assert seen.input == ["hello", "hi"]
    assert seen.input_type == "search"
    assert seen.timeout == 5.0


async def test_single_string_input_and_id_only_path_with_default_timeout():
    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as client:
        r = await client.post("/_inference/my-e5", json={"input": "one sentence"})
    assert r.status_code == 200
    assert r.json() == {"text_embedding": [{"embedding": [12.0, 1.0]}]}
    assert backend.requests[0].input == ["one sentence"]
    assert backend.requests[0].timeout == 30.0


@pytest.mark.parametrize("timeout, seconds", [("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1500micros", 0.0015)])
async def test_timeout_parameter_takes_elasticsearch_time_units(timeout, seconds):
    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as client:
        r = await client.post(f"/_inference/my-e5?timeout={timeout}", json={"input": "x"})
    assert r.status_code == 200
    assert backend.requests[0].timeout == pytest.approx(seconds)


async def test_timeout_without_unit_is_a_parse_exception():
    async with client_for(RecordingBackend(embedding_config())) as client:
        r = await client.post("/_inference/my-e5?timeout=30", json={"input": "x"})
    assert_es_error(r, 400, "parse_exception",
                    "failed to parse setting [timeout] with value [30] as a time value: unit is missing or unrecognized")


async def test_slow_backend_past_the_timeout_answers_408():
    backend = RecordingBackend(embedding_config(), delay=1.0)
    async with client_for(backend) as client:
        r = await client.post("/_inference/my-e5?timeout=50ms", json={"input": "x"})
    assert_es_error(r, 408, "status_exception", "timeout [50ms] waiting for inference result")


async def test_rerank_overrides_merge_over_endpoint_task_settings():
    backend = RecordingBackend(rerank_config())
    async with client_for(backend) as client:
        r = await client.post("/_inference/rerank/my-rerank", json={
            "input": ["a", "b", "c"], "query": "q", "top_n": 2, "task_settings": {"return_documents": True}})
    assert r.status_code == 200
    seen = backend.requests[0]
    assert seen.query == "q"
    assert seen.task_settings == {"return_documents": True, "top_n": 2}


async def test_unknown_task_setting_is_rejected_with_the_service_name():
    async with client_for(RecordingBackend(rerank_config())) as client:
        r = await client.post("/_inference/rerank/my-rerank",
                              json={"input": ["a"], "query": "q", "task_settings": {"temperature": 1}})
    assert_es_error(r, 400, "status_exception",
                    "Model configuration contains settings [{temperature=1}] unknown to the [elasticsearch] service")


@pytest.mark.parametrize("body, reason", [
    ({"input": []}, "Validation Failed: 1: Field [input] cannot be an empty array;"),
    ({}, "Validation Failed: 1: Field [input] cannot be null;"),
    ({"input": "x", "query": "q"}, "Validation Failed: 1: Field [query] cannot be specified for task type [text_embedding];"),
    ({"input": "x", "top_n": 1}, "Validation Failed: 1: Field [top_n] cannot be specified for task type [text_embedding];"),
])
async def test_invalid_embedding_bodies_are_validation_errors(body, reason):
    async with client_for(RecordingBackend(embedding_config())) as client:
        r = await client.post("/_inference/text_embedding/my-e5", json=body)
    assert_es_error(r, 400, "action_request_validation_exception", reason)


async def test_rerank_without_query_is_a_validation_error():
    async with client_for(RecordingBackend(rerank_config())) as client:
        r = await client.post("/_inference/rerank/my-rerank", json={"input": ["a"]})
    assert_es_error(r, 400, "action_request_validation_exception",
                    "Validation Failed: 1: Field [query] cannot be null for task type [rerank];")


async def test_input_of_wrong_type_and_unknown_fields_are_parse_errors():
    async with client_for(RecordingBackend(embedding_config())) as client:
        r1 = await client.post("/_inference/my-e5", json={"input": [1, 2]})
        r2 = await client.post("/_inference/my-e5", json={"input": "x", "inputs": "y"})
        r3 = await client.post("/_inference/my-e5", json={"input": "x", "input_type": "sideways"})
    assert_es_error(r1, 400, "x_content_parse_exception")
    assert_es_error(r2, 400, "x_content_parse_exception",
                    "[cluster:internal/xpack/inference] unknown field [inputs]")
    assert_es_error(r3, 400, "illegal_argument_exception")


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b"\xff\xfe"])
async def test_malformed_or_missing_body_is_a_parse_exception(content):
    async with client_for(RecordingBackend(embedding_config())) as client:
        r = await client.post("/_inference/my-e5", content=content, headers={"content-type": "application/json"})
    assert_es_error(r, 400, "parse_exception")


async def test_wrong_task_type_for_the_endpoint_is_rejected():
    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as client:
        r1 = await client.post("/_inference/sparse_embedding/my-e5", json={"input": "x"})
        r2 = await client.post("/_inference/teleport/my-e5", json={"input": "x"})
    assert_es_error(r1, 400, "status_exception",
                    "Incompatible task_type, the requested type [sparse_embedding] does not match the model type "
                    "[text_embedding]")
    assert_es_error(r2, 400, "status_exception", "Unknown task_type [teleport]")
    assert backend.requests == []


async def test_unknown_endpoint_is_404():
    async with client_for(RecordingBackend(embedding_config())) as client:
        r = await client.post("/_inference/text_embedding/nope", json={"input": "x"})
        g = await client.get("/_inference/nope")
    assert_es_error(r, 404, "resource_not_found_exception", "Inference endpoint not found [nope]")
    assert_es_error(g, 404, "resource_not_found_exception")


async def test_unknown_route_and_wrong_method_answer_as_elasticsearch_does():
    async with client_for(RecordingBackend(embedding_config())) as client:
        r1 = await client.get("/_nothing/here?pretty")
        r2 = await client.delete("/_inference/my-e5")
    assert r1.status_code == 400
    assert r1.headers["x-elastic-product"] == "Elasticsearch"
    assert r1.json() == {"error": "no handler found for uri [/_nothing/here?pretty] and method [GET]"}
    assert r2.status_code == 405
    assert r2.headers["allow"] == "GET,POST"
    assert r2.json() == {
        "error": "Incorrect HTTP method for uri [/_inference/my-e5] and method [DELETE], allowed: [GET, POST]",
        "status": 405,
    }


async def test_get_returns_the_endpoint_config_without_secrets():
    async with client_for(RecordingBackend(embedding_config())) as client:
        one = await client.get("/_inference/my-e5")
        typed = await client.get("/_inference/text_embedding/my-e5")
        every = await client.get("/_inference/_all")
        wrong = await client.get("/_inference/rerank/my-e5")
    expected = {"endpoints": [{
        "inference_id": "my-e5", "task_type": "text_embedding", "service": "elasticsearch",
        "service_settings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1},
        # Elasticsearch 9 shows the default chunking of an embedding endpoint created without any.
        "chunking_settings": {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1},
    }]}
    assert one.json() == expected
    assert typed.json() == expected
    assert every.json() == expected
    assert_es_error(wrong, 400, "status_exception",
                    "Requested task type [rerank] does not match the inference endpoint's task type [text_embedding]")


async def test_task_type_in_a_path_is_read_in_any_case_as_elasticsearch_does():
    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as client:
        every = await client.get("/_inference/TEXT_EMBEDDING/_all")
        none = await client.get("/_inference/Rerank/_all")
        one = await client.get("/_inference/Text_Embedding/my-e5")
        inferred = await client.post("/_inference/TEXT_EMBEDDING/my-e5", json={"input": "x"})
    assert [e["inference_id"] for e in every.json()["endpoints"]] == ["my-e5"]
    assert none.json() == {"endpoints": []}
    assert one.status_code == 200 and inferred.status_code == 200
    assert len(backend.requests) == 1


async def test_readyz_follows_the_backend_and_requests_wait_for_it():
    backend = RecordingBackend(embedding_config(), ready=False)
    async with client_for(backend) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        early = await client.post("/_inference/my-e5", json={"input": "x"})
        backend._ready = True
        assert (await client.get("/readyz")).status_code == 200
    assert_es_error(early, 503, "status_exception")
    assert backend.requests == []


async def test_metrics_count_requests_errors_and_latency():
    backend = RecordingBackend(embedding_config("metered"))
    async with client_for(backend) as client:
        await client.post("/_inference/metered", json={"input": ["a", "b"]})
        await client.post("/_inference/metered", json={"input": []})
        text = (await client.get("/metrics")).text
    assert 'kubeinfer_inference_requests_total{inference_id="metered",status="200",task_type="text_embedding"} 1.0' in text
    assert ('kubeinfer_inference_errors_total{inference_id="metered",type="action_request_validation_exception"} 1.0'
            in text)
    assert 'kubeinfer_inference_request_duration_seconds_count{inference_id="metered",task_type="text_embedding"} 2.0' in text
    assert 'kubeinfer_inference_inputs_total{inference_id="metered",task_type="text_embedding"} 2.0' in text


# ---- OpenAI's API on the endpoint pod ---------------------------------------------------------

async def test_the_pod_answers_the_openai_sdk_for_its_one_endpoint():
    import openai

    backend = RecordingBackend(embedding_config())
    async with client_for(backend) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="unused", http_client=http, max_retries=0)
        answer = await sdk.embeddings.create(model="my-e5", input=["abc", "de"])
        assert [d.embedding for d in answer.data] == [[3.0, 1.0], [2.0, 1.0]]
        assert backend.requests[-1].input == ["abc", "de"]
        assert [m.id async for m in sdk.models.list()] == ["my-e5"]
        with pytest.raises(openai.NotFoundError):
            await sdk.embeddings.create(model="other", input="x")


async def test_a_pod_still_loading_its_model_answers_503_in_openai_shape():
    async with client_for(RecordingBackend(embedding_config(), ready=False)) as http:
        response = await http.post("/v1/embeddings", json={"model": "my-e5", "input": "x"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "server_error" and "loading" in error["message"]


@pytest.mark.parametrize("method,path", [
    ("POST", "/_inference/my-e5"),
    ("POST", "/_inference/text_embedding/my-e5"),
    ("POST", "/_inference/rerank/my-e5"),
    ("POST", "/_inference/text_embedding/my-e5/_stream"),
    ("POST", "/_inference/my-e5/_stream"),
    ("POST", "/_inference/chat_completion/my-e5"),
    ("POST", "/_inference/chat_completion/my-e5/_stream"),
    ("POST", "/_inference/chat_completion/my-e5/_unified"),
    ("POST", "/_inference/chat_completion/_stream"),
    ("POST", "/_inference/a/b/c"),
    ("POST", "/_inference/my-e5/"),
    ("POST", "/_inference//my-e5"),
    ("POST", "/_inference/"),
    ("POST", "/_inference/_stream"),
    ("POST", "/_inference/my%2Fe5"),
    ("PATCH", "/_inference/my-e5"),
    ("GET", "/_inference/my-e5"),
    ("PUT", "/_inference/text_embedding/my-e5/_stream"),
])
async def test_inference_posts_answer_as_routes_of_elasticsearchs_paths_would(method, path):
    """The inference POSTs are one route matched ahead of the app's others; every path,
    method and error must be answered exactly as plain routes of Elasticsearch's documented
    paths, placed after chat completion's, would answer it."""
    from starlette.routing import Route

    from model_server.api.inference import InferenceRoute

    def as_plain_routes(app) -> None:
        fast = next(r for r in app.router.routes if isinstance(r, InferenceRoute))
        app.router.routes.remove(fast)

        async def stream(http):
            return await fast.answer(http, True)

        async def infer(http):
            return await fast.answer(http, False)
        # create_app includes chat completion's router first, then the rest
        app.router.routes[1:1] = [
            Route("/_inference/{endpoint:endpoint}/_stream", stream, methods=["POST"]),
            Route("/_inference/{endpoint:endpoint}", infer, methods=["POST"])]

    answers = []
    for fast in (True, False):
        backend = RecordingBackend(embedding_config())
        app = create_app(SingleEndpointStore(backend.config, backend))
        if not fast:
            as_plain_routes(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            r = await client.request(method, path, json={"input": ["hello"]})
        answers.append((r.status_code, r.headers.get("allow"), r.headers.get("x-elastic-product"), r.text,
                        [(q.input, q.task_type) for q in backend.requests]))
    assert answers[0] == answers[1]


class Talker(Backend):
    """A chat_completion backend that answers "Hi" and records each request's deadline."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.timeouts: list[float] = []

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        raise AssertionError("chat_completion endpoints are streamed")

    async def chat(self, request):
        from model_server.backends.chat import ChatCompletionChunk, ChoiceDelta

        self.timeouts.append(request.timeout)
        yield ChatCompletionChunk(id="c-1", model="m", choices=(ChoiceDelta(role="assistant", content="Hi"),))


@pytest.mark.parametrize("timeout", ["-1", "99999999999999999999d"])
async def test_a_deadline_of_minus_one_or_past_any_clock_is_no_limit_on_every_route(timeout):
    """What the gateway relays (``?timeout=`` as the client wrote it) the pod takes on each
    of its routes, Elasticsearch's and OpenAI's alike."""
    messages = [{"role": "user", "content": "hi"}]
    embedder = RecordingBackend(embedding_config())
    async with client_for(embedder) as client:
        for path, body in [("/_inference/text_embedding/my-e5", {"input": "x"}),
                           ("/v1/embeddings", {"model": "my-e5", "input": "x"})]:
            r = await client.post(f"{path}?timeout={timeout}", json=body)
            assert r.status_code == 200, r.text
    assert all(request.timeout > 1e9 for request in embedder.requests)
    talker = Talker(parse_endpoint("talk", "chat_completion", {
        "service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o"}}))
    async with client_for(talker) as client:
        for path, body in [("/_inference/chat_completion/talk/_stream", {"messages": messages}),
                           ("/v1/chat/completions", {"model": "talk", "messages": messages}),
                           ("/v1/chat/completions", {"model": "talk", "messages": messages, "stream": True})]:
            r = await client.post(f"{path}?timeout={timeout}", json=body)
            assert r.status_code == 200, r.text
            assert "Hi" in r.text and "error" not in r.text, r.text
    assert len(talker.timeouts) == 3
