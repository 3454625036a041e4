"""``kubeinfer gateway`` against the Kubernetes API emulator: endpoints as InferenceEndpoint
resources, secrets in owned Secrets, inference forwarded to the endpoint's Service, and
callers checked with TokenReview and SubjectAccessReview.

The operator is played by a listener on the emulator that marks each InferenceEndpoint
Ready with the URL of a fake endpoint server; that server speaks Elasticsearch's own
inference API, as an endpoint pod does, and records what it received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest
from fake_providers import FakeProvider, Reply
from kubeemu import DEPLOYMENTS, INFERENCE_ENDPOINTS, SECRETS, faults
from local_mode import KubeinferProcess, ServedFake

from kubeinfer.config import GatewaySettings
from kubeinfer.kube import Connection
from model_server.gateway.main import build_gateway_app

NS = "default"
ADMIN, VIEWER, STRANGER, PROMETHEUS = "admin-token", "viewer-token", "stranger-token", "prometheus-token"
USERS = {
    ADMIN: {"username": "alice", "uid": "u-1", "groups": ["ml-admins"]},
    VIEWER: {"username": "bob", "uid": "u-2", "groups": ["apps"]},
    STRANGER: {"username": "mallory", "uid": "u-3", "groups": []},
    PROMETHEUS: {"username": "system:serviceaccount:monitoring:prometheus", "uid": "u-4", "groups": []},
}
# Kubernetes RBAC as the Helm chart's ClusterRoles grant it.
GRANTS = {"alice": {"get", "list", "create", "update", "delete"}, "bob": {"get", "list"}}
# Secrets each user may get, and non-resource URLs each may get.
SECRET_GRANTS = {"alice": {"team-a-openai"}}
URL_GRANTS = {"system:serviceaccount:monitoring:prometheus": {"/metrics"}}


class OperatorStandIn:
    """Marks InferenceEndpoints Ready at ``url`` for their current generation, unless held."""

    def __init__(self, emulator, url: str) -> None:
        self.emulator, self.url, self.held = emulator, url, False
        self.refuse: str | None = None
        # Whether each resource's spec could read its referenced Secrets when first seen.
        self.secrets_present: dict[str, bool] = {}

    def __call__(self, event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key != INFERENCE_ENDPOINTS or event_type == "DELETED":
            return
        meta, status = obj["metadata"], obj.get("status") or {}
        if event_type == "ADDED":
            refs = [v["secretKeyRef"]["name"] for v in obj["spec"]["serviceSettings"].values()
                    if isinstance(v, dict) and "secretKeyRef" in v]
            self.secrets_present[meta["name"]] = all(
                self.emulator.get(SECRETS, meta["namespace"], name) is not None for name in refs)
        if self.held or status.get("observedGeneration") == meta["generation"]:
            return
        if self.refuse is not None:
            self.emulator.update_status(INFERENCE_ENDPOINTS, meta["namespace"], meta["name"], {
                "observedGeneration": meta["generation"],
                "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": self.refuse,
                                "observedGeneration": meta["generation"]}],
            })
            return
        self.emulator.update_status(INFERENCE_ENDPOINTS, meta["namespace"], meta["name"], {
            "observedGeneration": meta["generation"],
            # As the operator writes it: the endpoint's own _inference path on its Service.
            "url": f"{self.url}/_inference/{obj['spec']['taskType']}/{obj['spec'].get('inferenceId', meta['name'])}",
            "dimensions": 2, "similarity": "dot_product",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "serving"}],
        })


@pytest.fixture
def endpoint_server():
    fake = FakeProvider()
    def embeddings(r) -> Reply:
        inputs = [r.json["input"]] if isinstance(r.json["input"], str) else r.json["input"]
        return Reply(json={"text_embedding": [{"embedding": [float(len(t)), 1.0]} for t in inputs]})

    fake.on("/_inference/text_embedding/gw-emb", embeddings)
    fake.on("/_inference/completion/gw-chat/_stream", Reply(events=[
        ("message", json.dumps({"completion": [{"delta": "Hel"}]}, separators=(",", ":"))),
        ("message", json.dumps({"completion": [{"delta": "lo"}]}, separators=(",", ":"))),
        ("message", "[DONE]"),
    ]))
    fake.on("/_inference/chat_completion/gw-talk/_stream", lambda r: Reply(raw="".join(
        # As a pod writes them: a byte-order mark before every event.
        f"\ufeffevent: message\ndata: {data}\n\n" for data in (
            json.dumps(CHAT_CHUNK, separators=(",", ":")), json.dumps(USAGE_CHUNK, separators=(",", ":")), "[DONE]")
    ).encode(), content_type="text/event-stream") if r.json["messages"][0]["content"] != "fail" else Reply(401, raw=(
        '\ufeffevent: error\ndata: {"error":{"code":"unauthorized","message":"bad key","type":"status_exception"}}'
        '\n\n').encode(), content_type="text/event-stream"))
    fake.on("/_inference/completion/gw-chat", Reply(429, {
        "error": {"root_cause": [{"type": "status_exception", "reason": "too many requests"}],
                  "type": "status_exception", "reason": "too many requests"}, "status": 429}))
    # OpenAI's routes, which every endpoint pod serves beside Elasticsearch's.
    fake.on("/v1/embeddings", openai_embeddings)
    fake.on("/v1/chat/completions", lambda r: Reply(events=[
        (None, json.dumps(OPENAI_CHUNK)), (None, json.dumps(OPENAI_USAGE_CHUNK)), (None, "[DONE]")]))
    with ServedFake(fake) as served:
        yield served


def openai_embeddings(received) -> Reply:
    """OpenAI's embeddings answer, as an endpoint pod writes it: a vector per input, in
    base64 (little-endian float32) when the SDK asks for it."""
    inputs = received.json["input"]
    data = []
    for i, text in enumerate([inputs] if isinstance(inputs, str) else inputs):
        vector = [float(len(text)), 1.0]
        if received.json.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    return Reply(json={"object": "list", "data": data, "model": received.json["model"],
                       "usage": {"prompt_tokens": 1, "total_tokens": 1}})


OPENAI_CHUNK = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "gw-talk", "choices": [
    {"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
     "finish_reason": None}]}
OPENAI_USAGE_CHUNK = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "gw-talk",
                      "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@pytest.fixture
def cluster(kube, endpoint_server):
    reviews: list[dict[str, Any]] = []

    def policy(spec: dict[str, Any]) -> tuple[bool, str]:
        reviews.append(spec)
        attrs = spec.get("resourceAttributes") or {}
        url = spec.get("nonResourceAttributes") or {}
        if url:
            ok = url.get("verb") == "get" and url.get("path") in URL_GRANTS.get(spec.get("user"), ())
        elif (attrs.get("group"), attrs.get("resource")) == ("", "secrets"):
            ok = attrs.get("verb") == "get" and attrs.get("namespace") == NS and attrs.get("name") in SECRET_GRANTS.get(
                spec.get("user"), ())
        else:
            ok = (attrs.get("group"), attrs.get("resource"), attrs.get("namespace")) == (
                "kubeinfer.io", "inferenceendpoints", NS) and attrs.get("verb") in GRANTS.get(spec.get("user"), ())
        return ok, "RBAC: allowed" if ok else ""

    def configure() -> OperatorStandIn:
        kube.emulator.tokens.update(USERS)
        kube.emulator.access_policy = policy
        operator = OperatorStandIn(kube.emulator, endpoint_server.url)
        kube.emulator.on_change(operator)
        return operator

    operator = kube.call(configure)
    kube.reviews = reviews
    kube.operator = operator
    return kube


@contextlib.asynccontextmanager
async def gateway_with(cluster, settings: GatewaySettings | None = None):
    """A client of a gateway over ``cluster``, with ``settings`` (else the environment's)."""
    app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02,
                            settings=settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=30) as client:
            yield client


@pytest.fixture
async def gateway(cluster):
    async with gateway_with(cluster) as client:
        yield client


def as_user(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def openai_body(api_key: str = "sk-cluster-secret") -> dict[str, Any]:
    return {"service": "openai", "service_settings": {"api_key": api_key, "model_id": "text-embedding-3-small"}}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["type"], body["error"]["reason"]


async def test_put_creates_a_resource_and_an_owned_secret(gateway, cluster):
    response = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    assert response.status_code == 200, response.text
    assert "api_key" not in response.json()["service_settings"]
    assert "sk-cluster-secret" not in response.text

    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")
    assert cr["spec"]["taskType"] == "text_embedding" and cr["spec"]["service"] == "openai"
    assert cr["spec"]["serviceSettings"]["api_key"] == {"secretKeyRef": {"name": "gw-emb-secrets", "key": "api_key"}}
    assert "sk-cluster-secret" not in json.dumps(cr)

    secret = cluster.get(SECRETS, NS, "gw-emb-secrets")
    assert base64.b64decode(secret["data"]["api_key"]).decode() == "sk-cluster-secret"
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("InferenceEndpoint", "gw-emb", cr["metadata"]["uid"])
    assert owner["controller"] is True

    assert cluster.operator.secrets_present == {"gw-emb": True}
    assert {r["resourceAttributes"]["verb"] for r in cluster.reviews if r["user"] == "alice"} == {"create"}
    again = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    assert error_of(again) == (400, "resource_already_exists_exception", "Inference endpoint [gw-emb] already exists")


async def test_a_spec_the_operator_refuses_is_an_error_and_leaves_nothing(gateway, cluster):
    cluster.call(lambda: setattr(cluster.operator, "refuse", "model [x] needs a GPU this cluster lacks"))
    response = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    assert error_of(response) == (
        400, "status_exception", "Inference endpoint [gw-emb] is invalid: model [x] needs a GPU this cluster lacks")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb") is None
    # the Secret, owned by the resource, goes with it: the garbage collector works in the background
    cluster.wait_until(lambda: cluster.get(SECRETS, NS, "gw-emb-secrets") is None)


async def test_invalid_put_creates_nothing(gateway, cluster):
    response = await gateway.put("/_inference/rerank/gw-bad", json=openai_body(), headers=as_user(ADMIN))
    assert error_of(response) == (400, "status_exception", "The [openai] service does not support task type [rerank]")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-bad") is None


async def test_get_lists_resources_including_those_applied_with_kubectl(gateway, cluster):
    cluster.create(INFERENCE_ENDPOINTS, {
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "applied-e5"},
        "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                 "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1,
                                     "num_threads": 1}}})
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))

    listed = await gateway.get("/_inference", headers=as_user(VIEWER))
    # Elasticsearch's preconfigured endpoints (ids starting with a dot) are listed too.
    assert [e["inference_id"] for e in listed.json()["endpoints"]] == [
        ".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch",
        "applied-e5", "gw-emb"]
    # What the operator learnt of the model, as Elasticsearch shows it.
    openai_view = listed.json()["endpoints"][4]["service_settings"]
    assert (openai_view["dimensions"], openai_view["similarity"]) == (2, "dot_product")
    assert "sk-cluster-secret" not in listed.text
    one = await gateway.get("/_inference/text_embedding/applied-e5", headers=as_user(VIEWER))
    assert one.json()["endpoints"][0]["service_settings"]["model_id"] == ".multilingual-e5-small"
    by_task = await gateway.get("/_inference/completion/_all", headers=as_user(VIEWER))
    assert by_task.json() == {"endpoints": []}
    missing = await gateway.get("/_inference/nope", headers=as_user(VIEWER))
    assert error_of(missing) == (404, "resource_not_found_exception", "Inference endpoint not found [nope]")


async def test_resources_named_apart_from_their_inference_id_are_found_by_id(gateway, cluster):
    cluster.create(INFERENCE_ENDPOINTS, {
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "team-a-e5"},
        "spec": {"inferenceId": "e5_small", "taskType": "text_embedding", "service": "elasticsearch",
                 "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}})
    found = await gateway.get("/_inference/e5_small", headers=as_user(ADMIN))
    assert found.json()["endpoints"][0]["inference_id"] == "e5_small"
    deleted = await gateway.delete("/_inference/e5_small", headers=as_user(ADMIN))
    assert deleted.json()["acknowledged"] is True
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "team-a-e5") is None


async def test_a_secret_that_belongs_to_someone_else_is_never_overwritten(gateway, cluster):
    cluster.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gw-emb-secrets"},
                             "data": {"api_key": base64.b64encode(b"theirs").decode()}})
    response = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    assert error_of(response) == (
        409, "status_exception", "Secret [gw-emb-secrets] exists and does not belong to inference endpoint [gw-emb]")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb") is None
    assert base64.b64decode(cluster.get(SECRETS, NS, "gw-emb-secrets")["data"]["api_key"]) == b"theirs"


async def test_a_left_over_secret_of_the_gateway_is_taken_over(gateway, cluster):
    # What deleting an endpoint leaves until the garbage collector has run.
    cluster.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "gw-emb-secrets", "labels": {"app.kubernetes.io/managed-by": "kubeinfer-gateway"}},
        "data": {"api_key": base64.b64encode(b"old").decode()}})
    response = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body("sk-new"),
                                 headers=as_user(ADMIN))
    assert response.status_code == 200, response.text
    secret = cluster.get(SECRETS, NS, "gw-emb-secrets")
    assert base64.b64decode(secret["data"]["api_key"]) == b"sk-new"
    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [cr["metadata"]["uid"]]


async def test_inference_is_forwarded_to_the_endpoint_service(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    response = await gateway.post("/_inference/text_embedding/gw-emb", json={"input": ["abc", "de"]},
                                  headers=as_user(VIEWER))
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [3.0, 1.0]}, {"embedding": [2.0, 1.0]}]}
    received = endpoint_server.fake.to("/_inference/text_embedding/gw-emb")[-1]
    assert received.json["input"] == ["abc", "de"]
    # The caller's token stays at the gateway.
    assert VIEWER not in json.dumps(received.headers)


async def test_relayed_inference_is_counted_under_its_endpoint(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    response = await gateway.post("/_inference/gw-emb", json={"input": "abc"}, headers=as_user(VIEWER))
    assert response.status_code == 200, response.text
    scraped = (await gateway.get("/metrics", headers=as_user(PROMETHEUS))).text
    assert ('kubeinfer_inference_requests_total{inference_id="gw-emb",status="200",task_type="text_embedding"}'
            in scraped)


async def test_streamed_completion_is_relayed_event_by_event(gateway, cluster, endpoint_server):
    body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o-mini"}}
    assert (await gateway.put("/_inference/completion/gw-chat", json=body, headers=as_user(ADMIN))).status_code == 200
    async with gateway.stream("POST", "/_inference/completion/gw-chat/_stream", json={"input": "hi"},
                              headers=as_user(VIEWER)) as response:
        assert response.status_code == 200
        data = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    assert data == ['{"completion":[{"delta":"Hel"}]}', '{"completion":[{"delta":"lo"}]}', "[DONE]"]
    # An error from the endpoint comes back as the endpoint said it.
    failed = await gateway.post("/_inference/completion/gw-chat", json={"input": "hi"}, headers=as_user(VIEWER))
    assert error_of(failed) == (429, "status_exception", "too many requests")


async def test_the_gateway_routes_bytes_without_decoding_or_re_encoding_them(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    # The pod's own formatting (spacing, number spelling, key order) survives: nothing re-encodes it.
    answer = b'{ "text_embedding" : [ {"embedding": [1.50, 2e0]} ],"x-order": 1 }'
    endpoint_server.fake.on("/_inference/text_embedding/gw-emb",
                            Reply(raw=answer, content_type="application/json", headers={"X-Pod": "yes"}))
    sent = b'{"input":  ["abc"] ,  "input_type": "ingest"}'
    response = await gateway.post("/_inference/gw-emb?timeout=7s", content=sent,
                                  headers={**as_user(VIEWER), "Content-Type": "application/json"})
    assert (response.status_code, response.content) == (200, answer)
    assert response.headers["content-type"] == "application/json" and response.headers["x-pod"] == "yes"
    received = endpoint_server.fake.to("/_inference/text_embedding/gw-emb")[-1]
    assert received.body == sent and received.query == {"timeout": "7s"}
    assert VIEWER not in json.dumps(received.headers)


async def test_a_whole_answer_larger_than_the_relays_buffer_comes_back_whole(gateway, cluster, endpoint_server):
    """Many inputs of a wide model make answers of megabytes: the relay reads them to the
    end rather than stalling once its read buffer is full."""
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    vector = [0.123456789] * 1024
    answer = json.dumps({"text_embedding": [{"embedding": vector}] * 400}).encode()
    assert len(answer) > 4 * 1024 * 1024
    endpoint_server.fake.on("/_inference/text_embedding/gw-emb", Reply(raw=answer, content_type="application/json"))
    started = time.monotonic()
    response = await gateway.post("/_inference/gw-emb?timeout=10s", json={"input": ["x"] * 400},
                                  headers=as_user(VIEWER))
    assert (response.status_code, len(response.content)) == (200, len(answer)), response.text[:300]
    assert response.content == answer
    assert time.monotonic() - started < 5


class EndlessHeadersPod:
    """A server at an endpoint's address whose answer's headers never end (an image the
    deployment policy lets a team build itself may do anything); it counts the requests
    it read and whether the gateway hung up on it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.requests, self.hung_up = 0, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.server.accept()
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: ")
                while True:  # one header value, then many more headers, without end
                    conn.sendall(b"a" * 65536 + b"\r\nX-More: ")
        self.hung_up.set()


async def test_a_pods_endless_answer_headers_are_refused_not_held(gateway, cluster):
    pod = EndlessHeadersPod()
    cluster.operator.url = pod.url
    try:
        await gateway.put("/_inference/text_embedding/gw-loud", json=openai_body(), headers=as_user(ADMIN))
        started = time.monotonic()
        response = await gateway.post("/_inference/gw-loud?timeout=20s", json={"input": "x"}, headers=as_user(VIEWER))
        assert error_of(response)[0] == 502, response.text
        assert "gw-loud" in response.json()["error"]["reason"]
        assert time.monotonic() - started < 10
        assert pod.requests == 1 and await asyncio.to_thread(pod.hung_up.wait, 5)
    finally:
        pod.server.close()


# What a pod may write, in its own formatting (key order, spacing, number spelling), for
# each kind of route: the client of the gateway gets these very bytes.
ODD_EMBEDDINGS = b'{ "text_embedding" :[ {"embedding": [1.50 ,2e0]}] , "z" : 1}'
ODD_DELTAS = ('\ufeffevent: message\ndata: { "completion" : [{"delta":"Hel"}]}\n\n'
              '\ufeffevent: message\ndata: {"completion":[ {"delta" :"lo"} ]}\n\n'
              '\ufeffevent: message\ndata: [DONE]\n\n').encode()
ODD_OPENAI_EMBEDDINGS = (b'{"usage": {"total_tokens":1,"prompt_tokens":1},  "model":"gw-emb", '
                         b'"data":[{"index":0, "embedding":[ 3.0, 1e0 ],"object":"embedding"}], "object":"list"}')
ODD_COMPLETION = (b'{"model":"gw-talk" ,"choices":[{"message":{"content":"Hi","role":"assistant"},"index":0,'
                  b'"finish_reason":"stop"}],"object":"chat.completion","id":"c-1",  "created":1}')
ODD_CHUNKS = (b'data: {"model":"gw-talk","choices":[{"delta":{"content":"Hi"},"index":0}] , "id":"c-1",'
              b'"object":"chat.completion.chunk","created":1}\n\ndata: [DONE]\n\n')
ODD_UNIFIED = ('\ufeffevent: message\ndata: {"id":"c-1", "choices":[{"delta":{"content":"Hi"},"index":0}],'
               '"model":"gw-talk","object":"chat.completion.chunk"}\n\n\ufeffevent: message\ndata: [DONE]\n\n').encode()
HI = [{"role": "user", "content": "hi"}]
RELAYED = [
    # (path at the gateway, body, path on the pod, the pod's answer, its content type)
    ("/_inference/text_embedding/gw-emb", {"input": "abc"}, "/_inference/text_embedding/gw-emb", ODD_EMBEDDINGS,
     "application/json"),
    ("/_inference/completion/gw-chat/_stream", {"input": "hi"}, "/_inference/completion/gw-chat/_stream", ODD_DELTAS,
     "text/event-stream"),
    ("/_inference/chat_completion/gw-talk/_stream", {"messages": HI}, "/_inference/chat_completion/gw-talk/_stream",
     ODD_UNIFIED, "text/event-stream"),
    ("/v1/embeddings", {"model": "gw-emb", "input": "abc"}, "/v1/embeddings", ODD_OPENAI_EMBEDDINGS,
     "application/json"),
    ("/v1/chat/completions", {"model": "gw-talk", "messages": HI}, "/v1/chat/completions", ODD_COMPLETION,
     "application/json"),
    ("/v1/chat/completions", {"model": "gw-talk", "messages": HI, "stream": True}, "/v1/chat/completions",
     ODD_CHUNKS, "text/event-stream"),
]


async def create_relayed_endpoints(gateway) -> None:
    chat = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o"}}
    for path, body in [("/_inference/text_embedding/gw-emb", openai_body()),
                       ("/_inference/completion/gw-chat", chat), ("/_inference/chat_completion/gw-talk", chat)]:
        assert (await gateway.put(path, json=body, headers=as_user(ADMIN))).status_code == 200


@pytest.mark.parametrize("path,body,pod_path,answer,content_type", RELAYED)
async def test_every_inference_route_hands_the_pods_own_bytes_back(gateway, cluster, endpoint_server, path, body,
                                                                     pod_path, answer, content_type):
    await create_relayed_endpoints(gateway)
    endpoint_server.fake.on(pod_path, Reply(raw=answer, content_type=content_type))
    sent = json.dumps(body, indent=1).encode()  # the client's formatting, which the pod gets as it is
    async with gateway.stream("POST", f"{path}?timeout=-1", content=sent,
                              headers={**as_user(VIEWER), "Content-Type": "application/json"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        pieces = [piece async for piece in response.aiter_raw()]
    assert b"".join(pieces) == answer
    received = endpoint_server.fake.to(pod_path)[-1]
    # The body as sent, and the deadline spelled as the pod reads it: -1 waits for as long as it takes.
    assert received.body == sent and received.query == {"timeout": "-1"}
    assert VIEWER not in json.dumps(received.headers)


async def test_openai_routes_answer_the_gateways_own_errors_in_openai_shape(gateway, cluster, endpoint_server):
    await create_relayed_endpoints(gateway)
    seen = len(endpoint_server.fake.received)
    for path, body, status in [("/v1/embeddings", {"model": "nope", "input": "x"}, 404),
                               ("/v1/embeddings", {"model": "gw-talk", "input": "x"}, 400),
                               ("/v1/chat/completions", {"messages": HI}, 400),
                               ("/v1/embeddings?timeout=soon", {"model": "gw-emb", "input": "x"}, 400)]:
        response = await gateway.post(path, json=body, headers=as_user(VIEWER))
        assert response.status_code == status, (path, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}, response.text
    assert len(endpoint_server.fake.received) == seen  # none reached the pod
    # The endpoint's server goes away (nothing listens on the discard port).
    status = {**cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")["status"],
              "url": "http://127.0.0.1:9/_inference/text_embedding/gw-emb"}
    cluster.call(lambda: cluster.emulator.update_status(INFERENCE_ENDPOINTS, NS, "gw-emb", status))
    for path, body in [("/v1/embeddings", {"model": "gw-emb", "input": "x"}),
                       ("/_inference/text_embedding/gw-emb", {"input": "x"})]:
        for _ in range(100):  # until the watch has brought the change to the gateway's index
            response = await gateway.post(path, json=body, headers=as_user(VIEWER))
            if response.status_code != 200:
                break
            await asyncio.sleep(0.05)
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert "gw-emb" in (error.get("message") or error.get("reason")), error
        assert ("code" in error) == path.startswith("/v1")


async def test_a_body_too_large_to_buffer_is_streamed_to_the_pod_whole(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    texts = [f"sentence {i} " + "word " * 40 for i in range(600)]  # about 130 KB: past the buffered size
    sent = json.dumps({"input": texts}).encode()
    response = await gateway.post("/_inference/gw-emb", content=sent,
                                  headers={**as_user(VIEWER), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert [e["embedding"][0] for e in response.json()["text_embedding"]] == [float(len(t)) for t in texts]
    assert endpoint_server.fake.to("/_inference/text_embedding/gw-emb")[-1].body == sent


async def test_the_gateways_own_errors_stay_elasticsearch_shaped(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    seen = len(endpoint_server.fake.received)
    wrong_task = await gateway.post("/_inference/sparse_embedding/gw-emb", json={"input": "x"},
                                    headers=as_user(VIEWER))
    assert wrong_task.status_code == 400 and wrong_task.json()["error"]["type"] == "status_exception"
    missing = await gateway.post("/_inference/nope", json={"input": "x"}, headers=as_user(VIEWER))
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "resource_not_found_exception"
    assert len(endpoint_server.fake.received) == seen  # neither reached the pod
    endpoint_server.__exit__(None, None, None)  # the pod goes away
    gone = await gateway.post("/_inference/gw-emb", json={"input": "x"}, headers=as_user(VIEWER))
    assert error_of(gone)[:2] == (502, "status_exception")
    assert "Inference endpoint [gw-emb] is unreachable" in error_of(gone)[2]


CHAT_CHUNK = {"id": "c-1", "choices": [{"delta": {"role": "assistant", "tool_calls": [
    {"index": 0, "id": "call_1", "function": {"arguments": "{}", "name": "lookup"}, "type": "function"}]}, "index": 0}],
    "model": "gpt-4o", "object": "chat.completion.chunk"}
USAGE_CHUNK = {"id": "c-1", "choices": [], "model": "gpt-4o", "object": "chat.completion.chunk",
               "usage": {"completion_tokens": 2, "prompt_tokens": 3, "total_tokens": 5}}


async def test_chat_completion_chunks_are_relayed_through_the_gateway(gateway, cluster, endpoint_server):
    body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o"}}
    assert (await gateway.put("/_inference/chat_completion/gw-talk", json=body,
                              headers=as_user(ADMIN))).status_code == 200
    chat = {"messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]}
    response = await gateway.post("/_inference/chat_completion/gw-talk/_stream", json=chat, headers=as_user(VIEWER))
    assert response.status_code == 200
    assert response.text == "".join(f"\ufeffevent: message\ndata: {data}\n\n" for data in (
        json.dumps(CHAT_CHUNK, separators=(",", ":")), json.dumps(USAGE_CHUNK, separators=(",", ":")), "[DONE]"))
    [received] = endpoint_server.fake.to("/_inference/chat_completion/gw-talk/_stream")
    assert received.json == chat
    # The endpoint's unified error comes back with its status.
    failed = await gateway.post("/_inference/chat_completion/gw-talk/_stream", headers=as_user(VIEWER),
                                json={"messages": [{"role": "user", "content": "fail"}]})
    assert failed.status_code == 401
    assert failed.text == ('\ufeffevent: error\ndata: {"error":{"code":"unauthorized","message":"bad key",'
                           '"type":"status_exception"}}\n\n')


async def test_update_rotates_the_secret_and_changes_the_resource(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    response = await gateway.put("/_inference/text_embedding/gw-emb/_update", headers=as_user(ADMIN), json={
        "service_settings": {"api_key": "sk-rotated", "rate_limit": {"requests_per_minute": 60}}})
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 60}
    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")
    assert cr["spec"]["serviceSettings"]["rate_limit"] == {"requests_per_minute": 60}
    # New credentials come in a new Secret owned by the resource; the old one is gone.
    ref = cr["spec"]["serviceSettings"]["api_key"]["secretKeyRef"]
    assert ref["key"] == "api_key" and ref["name"].startswith("gw-emb-secrets-")
    secret = cluster.get(SECRETS, NS, ref["name"])
    assert base64.b64decode(secret["data"]["api_key"]).decode() == "sk-rotated"
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [cr["metadata"]["uid"]]
    assert [s["metadata"]["name"] for s in cluster.list(SECRETS, NS)] == [ref["name"]]
    assert cluster.reviews[-1]["resourceAttributes"]["verb"] == "update"


async def test_an_update_refused_by_a_conflict_leaves_the_old_endpoint_whole(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body("sk-old"), headers=as_user(ADMIN))
    before = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")
    # Someone else writes the resource between the gateway's read and its write.
    cluster.call(lambda: faults.plan(cluster.emulator).add("PUT", INFERENCE_ENDPOINTS, 409))
    response = await gateway.put("/_inference/text_embedding/gw-emb/_update", headers=as_user(ADMIN), json={
        "service_settings": {"api_key": "sk-new", "rate_limit": {"requests_per_minute": 60}}})
    status, kind, reason = error_of(response)
    assert (status, kind) == (409, "status_exception") and "nothing was updated" in reason
    after = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")
    assert after["spec"] == before["spec"]
    # The old spec still has its old credentials; the new Secret was taken back.
    assert [s["metadata"]["name"] for s in cluster.list(SECRETS, NS)] == ["gw-emb-secrets"]
    assert base64.b64decode(cluster.get(SECRETS, NS, "gw-emb-secrets")["data"]["api_key"]) == b"sk-old"


async def test_the_gateway_is_ready_once_it_has_listed_the_endpoints(cluster):
    cluster.call(lambda: faults.plan(cluster.emulator).add("GET", INFERENCE_ENDPOINTS, 500, times=2))
    app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            first = await client.get("/readyz")
            for _ in range(100):  # the index lists again after a pause
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert first.status_code == 503
            assert (await client.get("/readyz")).status_code == 200
            listed = await client.get("/_inference", headers=as_user(VIEWER))
            assert listed.status_code == 200


async def test_put_waits_for_ready_on_the_gateways_one_watch_instead_of_polling(gateway, cluster):
    cluster.call(lambda: setattr(cluster.operator, "held", True))
    put = asyncio.create_task(gateway.put("/_inference/text_embedding/gw-w?timeout=20s", json=openai_body(),
                                          headers=as_user(ADMIN)))
    for _ in range(200):
        if cluster.get(INFERENCE_ENDPOINTS, NS, "gw-w"):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # a poller would read the resource over and over meanwhile
    assert not put.done()
    cluster.call(cluster.emulator.update_status, INFERENCE_ENDPOINTS, NS, "gw-w", {
        "observedGeneration": 1, "url": "http://127.0.0.1:9/unused",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "serving"}]})
    response = await asyncio.wait_for(put, 10)
    assert response.status_code == 200, response.text
    endpoints = [r for r in cluster.requests() if "/inferenceendpoints" in str(r.url.path)]
    assert not [r for r in endpoints if r.method.value == "GET" and str(r.url.path).endswith("/gw-w")]
    watches = [r for r in endpoints if r.params.get("watch") == "true"]
    assert len(watches) == 1 and "fieldSelector" not in watches[0].params  # the index's, for the namespace


async def test_delete_removes_the_resource_and_its_secret(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    response = await gateway.delete("/_inference/text_embedding/gw-emb", headers=as_user(ADMIN))
    assert response.json() == {"acknowledged": True, "pipelines": [], "indexes": []}
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb") is None
    cluster.wait_until(lambda: cluster.get(SECRETS, NS, "gw-emb-secrets") is None)
    gone = await gateway.get("/_inference/gw-emb", headers=as_user(ADMIN))
    assert gone.status_code == 404


async def test_a_deleted_endpoint_leaves_no_metrics_series_behind(gateway, cluster, endpoint_server):
    """Endpoints created, called and deleted with new ids must not grow ``/metrics`` (and
    the gateway's memory) without bound, whoever deletes them (here kubectl's way: the
    resource itself)."""
    series = 'kubeinfer_inference_requests_total{inference_id="gw-emb",status="200",task_type="text_embedding"}'
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    assert (await gateway.post("/_inference/gw-emb", json={"input": "abc"}, headers=as_user(VIEWER))).status_code == 200
    assert series in (await gateway.get("/metrics", headers=as_user(PROMETHEUS))).text
    cluster.delete(INFERENCE_ENDPOINTS, NS, "gw-emb")
    deadline = time.monotonic() + 10
    while series in (scraped := (await gateway.get("/metrics", headers=as_user(PROMETHEUS))).text):
        assert time.monotonic() < deadline, "the deleted endpoint's series stayed"
        await asyncio.sleep(0.05)
    assert 'inference_id="gw-emb"' not in scraped


async def test_an_endpoint_deleted_then_put_again_at_once_is_created_anew(gateway, cluster):
    """DELETE then PUT of the same id, without waiting for the garbage collector: the new
    endpoint gets its own Secret, whatever became of the old one meanwhile."""
    for attempt in range(20):
        put = await gateway.put("/_inference/text_embedding/gw-again", json=openai_body(f"sk-{attempt}"),
                                headers=as_user(ADMIN))
        assert put.status_code == 200, (attempt, put.text)
        cr = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-again")
        secret = cluster.get(SECRETS, NS, "gw-again-secrets")
        assert base64.b64decode(secret["data"]["api_key"]).decode() == f"sk-{attempt}"
        assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [cr["metadata"]["uid"]]
        deleted = await gateway.delete("/_inference/text_embedding/gw-again", headers=as_user(ADMIN))
        assert deleted.status_code == 200, (attempt, deleted.text)


async def test_put_waits_for_ready_and_times_out_as_elasticsearch_does(gateway, cluster):
    cluster.call(lambda: setattr(cluster.operator, "held", True))
    response = await gateway.put("/_inference/text_embedding/gw-slow?timeout=300ms", json=openai_body(),
                                 headers=as_user(ADMIN))
    status, kind, reason = error_of(response)
    assert (status, kind) == (408, "status_exception")
    assert "Timed out after [0.3s] waiting for inference endpoint [gw-slow] to be ready" in reason
    # The resource stays and becomes usable once the operator reports it Ready.
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-slow") is not None
    not_ready = await gateway.post("/_inference/gw-slow", json={"input": "x"}, headers=as_user(ADMIN))
    assert not_ready.status_code == 409


@pytest.mark.parametrize("method,path,body", [
    ("PUT", "/_inference/text_embedding/gw-x", openai_body()),
    ("GET", "/_inference", None),
    ("POST", "/_inference/text_embedding/gw-x", {"input": "x"}),
    ("DELETE", "/_inference/gw-x", None),
])
async def test_requests_without_a_token_are_unauthenticated(gateway, cluster, method, path, body):
    response = await gateway.request(method, path, json=body)
    assert error_of(response) == (
        401, "security_exception", f"missing authentication credentials for REST request [{path}]")
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.headers["www-authenticate"].startswith("Bearer")
    bad = await gateway.request(method, path, json=body, headers=as_user("forged-token"))
    assert error_of(bad)[:2] == (401, "security_exception")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-x") is None


async def test_rbac_decides_who_may_manage_and_who_may_only_use(gateway, cluster):
    denied = await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(VIEWER))
    assert error_of(denied) == (
        403, "security_exception",
        "action [cluster:admin/xpack/inference/put] is unauthorized for user [bob], this action is granted by the "
        "Kubernetes RBAC verb [create] on [inferenceendpoints.kubeinfer.io]")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb") is None
    review = cluster.reviews[-1]
    assert review["user"] == "bob" and review["groups"] == ["apps"]
    assert review["resourceAttributes"] == {"namespace": NS, "verb": "create", "group": "kubeinfer.io",
                                            "resource": "inferenceendpoints"}

    assert (await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(),
                              headers=as_user(ADMIN))).status_code == 200
    assert (await gateway.get("/_inference/gw-emb", headers=as_user(VIEWER))).status_code == 200
    assert (await gateway.post("/_inference/gw-emb", json={"input": "x"}, headers=as_user(VIEWER))).status_code == 200
    denied_delete = await gateway.delete("/_inference/gw-emb", headers=as_user(VIEWER))
    assert error_of(denied_delete)[:2] == (403, "security_exception")
    assert error_of(await gateway.get("/_inference", headers=as_user(STRANGER)))[:2] == (403, "security_exception")
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb") is not None


def test_kubeinfer_gateway_command_finds_the_cluster_through_kubeconfig(cluster, kubeconfig):
    cluster.create(INFERENCE_ENDPOINTS, {
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "cli-e5"},
        "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                 "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}})
    with KubeinferProcess("gateway", "--host", "127.0.0.1", env={"KUBECONFIG": kubeconfig}) as gateway:
        assert gateway.client.get("/_inference").status_code == 401
        listed = gateway.client.get("/_inference", headers=as_user(VIEWER))
        listed_ids = [e["inference_id"] for e in listed.json()["endpoints"]]
        assert [i for i in listed_ids if not i.startswith(".")] == ["cli-e5"], gateway.text
        assert gateway.interrupt() == 0


class HeldStream:
    """An endpoint server that sends one completion event, then holds the stream open
    until the test releases it: a relay that buffered would deliver nothing meanwhile."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "more_body": True,
                    "body": b'event: message\ndata: {"completion":[{"delta":"first"}]}\n\n'})
        for _ in range(3000):  # released by the test, or given up on after about 30 s
            if self.release.is_set():
                break
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "more_body": True,
                    "body": b'event: message\ndata: {"completion":[{"delta":"second"}]}\n\n'})
        await send({"type": "http.response.body", "body": b"event: message\ndata: [DONE]\n\n"})


def test_stream_is_relayed_before_the_endpoint_has_finished(cluster):
    held = HeldStream()
    with ServedFake(held) as endpoint:
        cluster.call(lambda: setattr(cluster.operator, "url", endpoint.url))
        app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02)
        with ServedFake(app) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as client:
            body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o-mini"}}
            assert client.put("/_inference/completion/held", json=body, headers=as_user(ADMIN)).status_code == 200
            with client.stream("POST", "/_inference/completion/held/_stream", json={"input": "hi"},
                               headers=as_user(VIEWER)) as response:
                lines = (line for line in response.iter_lines() if line.startswith("data: "))
                # Read while the endpoint still holds its stream open (a buffering relay times out here).
                assert next(lines) == 'data: {"completion":[{"delta":"first"}]}'
                held.release.set()
                assert list(lines) == ['data: {"completion":[{"delta":"second"}]}', "data: [DONE]"]


# ---- the OpenAI-compatible API through the gateway ---------------------------------------------

def openai_sdk(gateway: httpx.AsyncClient, token: str):
    import openai

    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=token, max_retries=0, http_client=gateway)


async def test_openai_sdk_through_the_gateway_with_the_callers_token(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    body = {"service": "openai", "service_settings": {"api_key": "k", "model_id": "gpt-4o"}}
    assert (await gateway.put("/_inference/chat_completion/gw-talk", json=body,
                              headers=as_user(ADMIN))).status_code == 200
    sdk = openai_sdk(gateway, VIEWER)
    embedded = await sdk.embeddings.create(model="gw-emb", input=["abc", "de"])
    assert [d.embedding for d in embedded.data] == [[3.0, 1.0], [2.0, 1.0]]
    assert endpoint_server.fake.to("/v1/embeddings")[-1].json["input"] == ["abc", "de"]
    stream = await sdk.chat.completions.create(model="gw-talk", messages=[{"role": "user", "content": "hi"}],
                                               stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    [call] = chunks[0].choices[0].delta.tool_calls
    assert (call.id, call.function.name) == ("call_1", "lookup")
    assert chunks[-1].usage.total_tokens == 5
    assert {m.id async for m in sdk.models.list() if not m.id.startswith(".")} == {"gw-emb", "gw-talk"}
    # the gateway asked RBAC about the SDK's key, as about any bearer token
    assert {r["resourceAttributes"]["verb"] for r in cluster.reviews if r["user"] == "bob"} == {"get"}


async def test_openai_routes_refuse_unknown_and_unauthorized_callers_in_openai_shape(gateway, cluster):
    import openai

    with pytest.raises(openai.AuthenticationError) as unknown:
        await openai_sdk(gateway, "forged-token").models.list()
    assert unknown.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as stranger:
        await openai_sdk(gateway, STRANGER).embeddings.create(model="gw-emb", input="x")
    assert stranger.value.body["type"] == "permission_error" and "mallory" in stranger.value.body["message"]
    anonymous = await gateway.post("/v1/embeddings", json={"model": "gw-emb", "input": "x"})
    assert anonymous.status_code == 401 and set(anonymous.json()["error"]) == {"message", "type", "param", "code"}


async def test_preconfigured_endpoints_are_listed_reserved_and_created_on_first_use(gateway, cluster):
    listed = await gateway.get("/_inference/sparse_embedding/.elser-2-elasticsearch", headers=as_user(VIEWER))
    assert listed.json() == {"endpoints": [{
        "inference_id": ".elser-2-elasticsearch", "task_type": "sparse_embedding", "service": "elasticsearch",
        "service_settings": {"model_id": ".elser_model_2", "num_threads": 1, "adaptive_allocations": {
            "enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}},
        "chunking_settings": {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}}]}
    refused = await gateway.put("/_inference/text_embedding/.multilingual-e5-small-elasticsearch",
                                json=openai_body(), headers=as_user(ADMIN))
    assert error_of(refused) == (400, "status_exception", (
        "[.multilingual-e5-small-elasticsearch] is a reserved inference ID. Cannot create a new inference "
        "endpoint with a reserved ID."))
    # The first inference asks the operator for the model's Deployment through a resource.
    await gateway.post("/_inference/.rerank-v1-elasticsearch", json={"input": ["a"], "query": "q"},
                       headers=as_user(VIEWER))
    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "preconfigured-rerank-v1-elasticsearch")
    assert cr["spec"]["inferenceId"] == ".rerank-v1-elasticsearch"
    assert cr["spec"]["serviceSettings"]["model_id"] == ".rerank-v1"


# ---- scale from zero: the gateway holds a request while the endpoint wakes ----------------------

def scale_to_zero(cluster, name: str, autoscaler: str = "hpa") -> None:
    """The endpoint as the operator leaves it at zero: its Deployment at 0 replicas and the
    resource Ready with reason ScaledToZero. Once the Deployment asks for a replica, the
    stand-in reports the endpoint Available (its pod came up)."""
    cluster.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "annotations": {"kubeinfer.io/autoscaler": autoscaler,
                                                                    "kubeinfer.io/min-replicas": "0"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}})

    def mark(reason: str) -> None:
        cr = cluster.emulator.get(INFERENCE_ENDPOINTS, NS, name)
        cluster.emulator.update_status(INFERENCE_ENDPOINTS, NS, name, {
            **cr["status"], "readyReplicas": 0 if reason == "ScaledToZero" else 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": reason, "message": reason}]})

    def wake_on_scale(event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key == DEPLOYMENTS and obj["metadata"]["name"] == name and obj["spec"].get("replicas"):
            mark("Available")

    def configure() -> None:
        mark("ScaledToZero")
        cluster.emulator.on_change(wake_on_scale)

    cluster.call(configure)
    time.sleep(1.1)  # past the gateway's one-second cache of the resource


def held(gateway_metrics: str, name: str) -> float:
    for line in gateway_metrics.splitlines():
        if line.startswith("kubeinfer_gateway_requests_held{") and f'inference_id="{name}"' in line:
            return float(line.split()[-1])
    return 0.0


async def test_a_request_for_an_endpoint_at_zero_scales_it_and_is_answered_once_ready(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    scale_to_zero(cluster, "gw-emb")
    response = await gateway.post("/_inference/text_embedding/gw-emb", json={"input": ["abc"]},
                                  headers=as_user(VIEWER))
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [3.0, 1.0]}]}
    assert cluster.get(DEPLOYMENTS, NS, "gw-emb")["spec"]["replicas"] == 1
    scale = [r for r in cluster.requests() if r.url.path.endswith("/deployments/gw-emb/scale")]
    assert [r.method.value for r in scale] == ["PATCH"]


async def test_with_keda_the_held_request_is_counted_for_activation_and_released_when_ready(gateway, cluster):
    from prometheus_client import generate_latest

    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    scale_to_zero(cluster, "gw-emb", autoscaler="keda")
    request = asyncio.create_task(gateway.post("/v1/embeddings", json={"model": "gw-emb", "input": "abc"},
                                               headers=as_user(VIEWER)))
    for _ in range(200):
        if held(generate_latest().decode(), "gw-emb") == 1:
            break
        await asyncio.sleep(0.02)
    assert held(generate_latest().decode(), "gw-emb") == 1
    assert not request.done()
    # the gateway leaves the replica count to KEDA, which activates on the gauge
    assert cluster.get(DEPLOYMENTS, NS, "gw-emb")["spec"]["replicas"] == 0
    cluster.patch(DEPLOYMENTS, NS, "gw-emb", {"spec": {"replicas": 1}})  # KEDA's 0 -> 1
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200 and response.json()["data"][0]["embedding"] == [3.0, 1.0]
    assert held(generate_latest().decode(), "gw-emb") == 0


async def test_requests_held_while_an_endpoint_wakes_cost_the_api_server_nothing(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    scale_to_zero(cluster, "gw-emb", autoscaler="keda")
    before = len(cluster.requests())
    held = [asyncio.create_task(gateway.post("/_inference/text_embedding/gw-emb", json={"input": ["abc"]},
                                             headers=as_user(VIEWER))) for _ in range(64)]
    await asyncio.sleep(1.0)
    assert not any(task.done() for task in held)
    during = [r for r in cluster.requests()[before:] if "/inferenceendpoints" in str(r.url.path)]
    assert during == [], [f"{r.method.value} {r.url}" for r in during[:5]]
    cluster.patch(DEPLOYMENTS, NS, "gw-emb", {"spec": {"replicas": 1}})  # KEDA's 0 -> 1
    answers = await asyncio.wait_for(asyncio.gather(*held), 20)
    assert {a.status_code for a in answers} == {200}


async def test_a_held_request_gets_a_408_when_its_timeout_passes_first(gateway, cluster):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    scale_to_zero(cluster, "gw-emb", autoscaler="keda")  # nothing activates it here
    response = await gateway.post("/_inference/text_embedding/gw-emb", params={"timeout": "300ms"},
                                  json={"input": ["abc"]}, headers=as_user(VIEWER))
    assert error_of(response) == (408, "status_exception", "timeout [300ms] waiting for inference result")


async def test_custom_secret_parameters_each_become_a_key_of_the_owned_secret(gateway, cluster):
    body = {"service": "custom", "service_settings": {
        "secret_parameters": {"api_key": "sk-custom-one", "org_token": "tok-two"},
        "url": "https://models.example/v1/embeddings",
        "headers": {"Authorization": "Bearer ${api_key}", "X-Org": "${org_token}"},
        "request": "{\"input\": ${input}}",
        "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}}}}
    response = await gateway.put("/_inference/text_embedding/gw-custom", json=body, headers=as_user(ADMIN))
    assert response.status_code == 200, response.text
    assert "secret_parameters" not in response.json()["service_settings"]
    assert "sk-custom-one" not in response.text and "tok-two" not in response.text

    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "gw-custom")
    assert cr["spec"]["serviceSettings"]["secret_parameters"] == {
        "api_key": {"secretKeyRef": {"name": "gw-custom-secrets", "key": "secret_parameters.api_key"}},
        "org_token": {"secretKeyRef": {"name": "gw-custom-secrets", "key": "secret_parameters.org_token"}},
    }
    assert "sk-custom-one" not in json.dumps(cr) and "tok-two" not in json.dumps(cr)
    secret = cluster.get(SECRETS, NS, "gw-custom-secrets")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "secret_parameters.api_key": "sk-custom-one", "secret_parameters.org_token": "tok-two"}


async def test_services_api_answers_readers_and_names_its_own_action_to_others(gateway, cluster):
    listed = await gateway.get("/_inference/_services/chat_completion", headers=as_user(VIEWER))
    assert listed.status_code == 200, listed.text
    assert "groq" in [s["service"] for s in listed.json()]
    status, kind, reason = error_of(await gateway.get("/_inference/_services", headers=as_user(STRANGER)))
    assert (status, kind) == (403, "security_exception")
    assert reason.startswith("action [cluster:monitor/xpack/inference/services/get] is unauthorized for user [mallory]")


# ---- hostile callers -----------------------------------------------------------------------
def referencing_body(secret: str, url: str = "https://attacker.example/v1") -> dict[str, Any]:
    return {"service": "openai", "service_settings": {
        "api_key": {"secretKeyRef": {"name": secret, "key": "api-key"}}, "model_id": "text-embedding-3-small",
        "url": url}}


async def test_a_secret_the_caller_may_not_read_cannot_be_referenced(gateway, cluster):
    # bob may use endpoints; give him the right to create them too, but not to read team A's key.
    GRANTS["bob"] = {"get", "list", "create", "update"}
    try:
        response = await gateway.put("/_inference/text_embedding/stolen", json=referencing_body("team-a-openai"),
                                     headers=as_user(VIEWER))
    finally:
        GRANTS["bob"] = {"get", "list"}
    status, kind, reason = error_of(response)
    assert (status, kind) == (403, "security_exception")
    assert "[bob]" in reason and "[secrets] named [team-a-openai]" in reason
    assert cluster.get(INFERENCE_ENDPOINTS, NS, "stolen") is None
    secret_reviews = [r for r in cluster.reviews if (r.get("resourceAttributes") or {}).get("resource") == "secrets"]
    assert secret_reviews[-1]["user"] == "bob"
    assert secret_reviews[-1]["resourceAttributes"]["name"] == "team-a-openai"


async def test_a_secret_the_caller_may_read_can_be_referenced(gateway, cluster):
    response = await gateway.put("/_inference/text_embedding/own-key", json=referencing_body("team-a-openai"),
                                 headers=as_user(ADMIN))
    assert response.status_code == 200, response.text
    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "own-key")
    assert cr["spec"]["serviceSettings"]["api_key"] == {"secretKeyRef": {"name": "team-a-openai", "key": "api-key"}}
    # An update that points the same endpoint at a Secret alice may not read is refused.
    moved = await gateway.put("/_inference/own-key/_update", json={"service_settings": {
        "api_key": {"secretKeyRef": {"name": "team-b-openai", "key": "api-key"}}}}, headers=as_user(ADMIN))
    assert error_of(moved)[:2] == (403, "security_exception")
    cr = cluster.get(INFERENCE_ENDPOINTS, NS, "own-key")
    assert cr["spec"]["serviceSettings"]["api_key"]["secretKeyRef"]["name"] == "team-a-openai"


async def test_metrics_need_a_token_allowed_to_get_them(gateway, cluster):
    assert (await gateway.get("/metrics")).status_code == 401
    assert error_of(await gateway.get("/metrics", headers=as_user(VIEWER)))[:2] == (403, "security_exception")
    scraped = await gateway.get("/metrics", headers=as_user(PROMETHEUS))
    assert scraped.status_code == 200
    assert "kubeinfer_inference_requests_total" in scraped.text


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%00", "%20", "%E2%80%8B", "%0A%0Aextra"])
async def test_ids_that_no_endpoint_can_have_are_not_found(gateway, cluster, suffix):
    for method, path in [("GET", f"/_inference/gw-emb{suffix}"), ("DELETE", f"/_inference/gw-emb{suffix}"),
                         ("POST", f"/_inference/text_embedding/gw-emb{suffix}"),
                         ("PUT", f"/_inference/gw-emb{suffix}/_update")]:
        response = await gateway.request(method, path, json={"input": "x"} if method != "GET" else None,
                                         headers=as_user(ADMIN))
        assert response.status_code in (400, 404), (method, path, response.text)
        assert response.json()["error"]["type"] in ("resource_not_found_exception", "validation_exception")
    created = await gateway.put(f"/_inference/text_embedding/gw-emb{suffix}", json=openai_body(),
                                headers=as_user(ADMIN))
    assert error_of(created)[:2] == (400, "validation_exception")


# ---- held requests: bounded in number and time, dropped with their client ----------------------

def test_a_held_request_is_dropped_when_its_client_goes_and_never_forwarded(cluster, endpoint_server):
    from prometheus_client import generate_latest

    app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02)
    with ServedFake(app) as gateway:
        url = f"http://127.0.0.1:{gateway.port}"
        assert httpx.put(f"{url}/_inference/text_embedding/gw-emb", json=openai_body(),
                         headers=as_user(ADMIN), timeout=10).status_code == 200
        scale_to_zero(cluster, "gw-emb", autoscaler="keda")  # nothing activates it while the test waits
        endpoint_server.fake.received.clear()
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and goes
                httpx.post(f"{url}/_inference/text_embedding/gw-emb?timeout=-1", json={"input": ["abc"]},
                           headers=as_user(VIEWER), timeout=0.5)
        time.sleep(0.3)
        assert held(generate_latest().decode(), "gw-emb") == 0
        cluster.patch(DEPLOYMENTS, NS, "gw-emb", {"spec": {"replicas": 1}})  # it wakes after all
        time.sleep(0.3)
        assert endpoint_server.fake.received == []


async def test_held_requests_past_the_cap_are_refused_with_a_429(cluster):
    async with gateway_with(cluster, GatewaySettings(held_requests_per_endpoint=2)) as gateway:
        await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
        scale_to_zero(cluster, "gw-emb", autoscaler="keda")
        held_ones = [asyncio.create_task(gateway.post(
            "/_inference/text_embedding/gw-emb?timeout=2s", json={"input": ["abc"]}, headers=as_user(VIEWER)))
            for _ in range(2)]
        await asyncio.sleep(0.3)
        refused = await gateway.post("/v1/embeddings", json={"model": "gw-emb", "input": "abc"},
                                     headers=as_user(VIEWER))
        assert refused.status_code == 429 and "gw-emb" in refused.json()["error"]["message"]
        refused = await gateway.post("/_inference/text_embedding/gw-emb", json={"input": ["abc"]},
                                     headers=as_user(VIEWER))
        status, kind, reason = error_of(refused)
        assert status == 429 and "[2]" in reason
        assert [(await t).status_code for t in held_ones] == [408, 408]


async def test_a_request_held_without_a_timeout_is_held_no_longer_than_the_cap(cluster):
    async with gateway_with(cluster, GatewaySettings(max_hold=0.5)) as gateway:
        await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
        scale_to_zero(cluster, "gw-emb", autoscaler="keda")
        for path, body in [("/_inference/text_embedding/gw-emb", {"input": ["abc"]}),
                           ("/v1/embeddings", {"model": "gw-emb", "input": "abc"})]:
            response = await gateway.post(f"{path}?timeout=-1", json=body, headers=as_user(VIEWER))
            assert response.status_code == 408, response.text
            assert "KUBEINFER_MAX_HOLD" in response.text


async def test_openai_routes_take_a_timeout_of_minus_one_ready_or_waking(gateway, cluster, endpoint_server):
    await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
    response = await gateway.post("/v1/embeddings?timeout=-1", json={"model": "gw-emb", "input": "abc"},
                                  headers=as_user(VIEWER))
    assert response.status_code == 200, response.text
    assert endpoint_server.fake.to("/v1/embeddings")[-1].query["timeout"] == "-1"
    scale_to_zero(cluster, "gw-emb")
    response = await gateway.post("/v1/embeddings?timeout=-1", json={"model": "gw-emb", "input": "abc"},
                                  headers=as_user(VIEWER))
    assert response.status_code == 200, response.text


async def test_connections_a_pod_closes_while_idle_are_not_reused(gateway, cluster):
    """A pod that closes idle keep-alive connections sooner than the gateway would keep them:
    each later request still reaches it (on a new connection) and gets its answer."""
    import uvicorn
    from local_mode import free_port

    pod = FakeProvider()
    pod.on("/_inference/text_embedding/gw-emb", Reply(raw=ODD_EMBEDDINGS, content_type="application/json"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(pod, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_keep_alive=0.2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        await gateway.put("/_inference/text_embedding/gw-emb", json=openai_body(), headers=as_user(ADMIN))
        status = {**cluster.get(INFERENCE_ENDPOINTS, NS, "gw-emb")["status"],
                  "url": f"http://127.0.0.1:{port}/_inference/text_embedding/gw-emb"}
        cluster.call(lambda: cluster.emulator.update_status(INFERENCE_ENDPOINTS, NS, "gw-emb", status))
        for _ in range(100):  # until the watch has brought the new address to the gateway
            if pod.received:
                break
            await gateway.post("/_inference/text_embedding/gw-emb", json={"input": "x"}, headers=as_user(VIEWER))
            await asyncio.sleep(0.05)
        for _ in range(3):
            await asyncio.sleep(0.5)  # past the pod's keep-alive: it has closed the connection
            response = await gateway.post("/_inference/text_embedding/gw-emb", json={"input": "x"},
                                          headers=as_user(VIEWER))
            assert (response.status_code, response.content) == (200, ODD_EMBEDDINGS)
    finally:
        server.should_exit = True
        thread.join(5)


async def test_every_create_example_of_the_specification_makes_a_resource(gateway, cluster):
    """Elasticsearch's documented create bodies, over HTTP: each becomes an InferenceEndpoint
    that the API server's schema and rules accept, with its secrets in an owned Secret."""
    from catalog_cases import SECRET_MAPS, SECRET_SETTINGS, SPEC_EXAMPLES

    taken: set[str] = set()
    for name, task, inference_id, body in SPEC_EXAMPLES:
        # Several examples share an id; each gets its own endpoint.
        while inference_id in taken:
            inference_id += "-again"
        taken.add(inference_id)
        response = await gateway.put(f"/_inference/{task}/{inference_id}", json=body, headers=as_user(ADMIN))
        assert response.status_code == 200, (name, response.text)
        shown = response.json()["service_settings"]
        assert not set(shown) & {*SECRET_SETTINGS, *SECRET_MAPS}, name
        if body.get("task_settings"):
            assert response.json()["task_settings"], name
    listed = await gateway.get("/_inference/_all", headers=as_user(ADMIN))
    assert taken <= {e["inference_id"] for e in listed.json()["endpoints"]}
