"""Elasticsearch 9.2–9.5's request shapes sent by the official ``elasticsearch`` Python
client, as a user sends them, to each front: local mode (``kubeinfer local``), and the
gateway over the Kubernetes API emulator whose endpoints run as ``kubeinfer serve``
processes. OAuth 2.0 client credentials for ``openai``, enum settings in any letter case,
rerank's ``top_n`` and ``return_documents``, chat completion ``reasoning`` streamed back,
the ``embedding`` task's ``content`` objects (a provider's and a local CLIP model's) and
the region policy API. The client's own method is used where it has one
(``perform_request`` where it has none: the unified chat stream); each test checks the
answer the client gets and what the fake provider received.

The operator is played by a listener on the emulator that runs each InferenceEndpoint as
its pod would: the resource as the manifest of ``kubeinfer serve``, its Secrets mounted
as files; then marks it Ready at the process's URL.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml
from elasticsearch import ApiError, BadRequestError, Elasticsearch
from fake_providers import FakeProvider, Received, Reply
from kubeemu import INFERENCE_ENDPOINTS, SECRETS
from kubeemu.cluster import EmulatedCluster
from local_mode import ROOT, LocalMode, ServedFake, free_port, openai_embeddings
from tiny_clip import PROJECTION_DIM, data_uri, png
from token_endpoint import CLIENT_ID, CLIENT_SECRET, TokenEndpoint, bearer_checked

from kubeinfer.kube import Connection
from model_server.gateway.main import build_gateway_app

NS = "search"
RELEASE_NS = "kubeinfer"
ADMIN = "admin-token"
RED = data_uri(png(20, 12, (200, 10, 30)))
DOCUMENTS = ["a cat", "the quick brown fox jumps", "dogs"]


# ---- fake providers, in their documented wire formats ------------------------------------

def openai_chat_stream(received: Received) -> Reply:
    """OpenAI's streamed chat completion, the model's reasoning in ``reasoning_content`` deltas."""
    pieces = [{"role": "assistant", "reasoning_content": "Two barbers can "},
              {"reasoning_content": "shave each other."}, {"content": "Each shaves the other."}]
    events = [(None, json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "o4-mini",
                                 "choices": [{"index": 0, "delta": piece, "finish_reason": None}]}))
              for piece in pieces]
    return Reply(events=[*events, (None, "[DONE]")])


def cohere_rerank(received: Received) -> Reply:
    """Cohere's v1 rerank: the ``top_n`` best, each with its document when ``return_documents``."""
    documents, top_n = received.json["documents"], received.json.get("top_n")
    ranked = sorted(range(len(documents)), key=lambda i: -len(documents[i]))[:top_n]
    results = [{"index": i, "relevance_score": round(len(documents[i]) / 100, 2),
                **({"document": {"text": documents[i]}} if received.json.get("return_documents") else {})}
               for i in ranked]
    return Reply(json={"id": "r-1", "results": results, "meta": {"api_version": {"version": "1"}}})


def jina_embeddings(received: Received) -> Reply:
    """Jina's /v1/embeddings: one vector per input, in OpenAI's ``data`` list."""
    return Reply(json={"model": received.json["model"], "object": "list", "usage": {"total_tokens": 3},
                       "data": [{"object": "embedding", "index": i, "embedding": [float(i), 1.0]}
                                for i in range(len(received.json["input"]))]})


@dataclass
class Providers:
    tokens: TokenEndpoint
    openai: ServedFake
    cohere: ServedFake
    jina: ServedFake


@contextlib.contextmanager
def providers() -> Iterator[Providers]:
    tokens = TokenEndpoint()
    openai = FakeProvider().on("/oauth2/token", tokens).on(
        "/v1/embeddings", bearer_checked(tokens, lambda r: Reply(json=openai_embeddings(
            *[[float(len(t)), 0.5] for t in r.json["input"]])))).on("/v1/chat/completions", openai_chat_stream)
    with ServedFake(openai) as served_openai, ServedFake(FakeProvider().on("/v1/rerank", cohere_rerank)) as cohere, \
            ServedFake(FakeProvider().on("/v1/embeddings", jina_embeddings)) as jina:
        yield Providers(tokens, served_openai, cohere, jina)


# ---- the gateway's cluster: the operator played by `kubeinfer serve` processes -----------

class ServePods:
    """Runs each InferenceEndpoint generation as its pod would, with ``kubeinfer serve``: the
    resource as its manifest and its Secrets as files under ``<secrets>/<name>/<key>``; then
    marks the resource Ready at the process's URL (or not Ready, with its output)."""

    def __init__(self, cluster: EmulatedCluster, root: Path) -> None:
        self.cluster, self.root = cluster, root
        self.pods: dict[str, subprocess.Popen] = {}
        self.seen: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def __call__(self, event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key != INFERENCE_ENDPOINTS:
            return
        meta = obj["metadata"]
        if event_type == "DELETED":
            self.stop(meta["name"])
            return
        with self.lock:
            if (meta["name"], meta["generation"]) in self.seen:
                return
            self.seen.add((meta["name"], meta["generation"]))
        threading.Thread(target=self.run, args=(copy.deepcopy(obj),), daemon=True).start()

    def run(self, obj: dict[str, Any]) -> None:
        meta, spec = obj["metadata"], obj["spec"]
        name = meta["name"]
        secrets = self.root / name / "secrets"
        for value in spec["serviceSettings"].values():
            if isinstance(value, dict) and "secretKeyRef" in value:
                ref = value["secretKeyRef"]
                secret = self._secret(meta["namespace"], ref["name"])
                (secrets / ref["name"]).mkdir(parents=True, exist_ok=True)
                (secrets / ref["name"] / ref["key"]).write_bytes(base64.b64decode(secret["data"][ref["key"]]))
        manifest = self.root / name / "endpoint.yaml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(yaml.safe_dump({"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                                            "metadata": {"name": name, "namespace": meta["namespace"]},
                                            "spec": spec}))
        self.stop(name)
        port = free_port()
        pod = subprocess.Popen(
            [sys.executable, "-P", "-m", "kubeinfer.cli", "serve", "--config", str(manifest), "--host", "127.0.0.1",
             "--port", str(port), "--secrets-dir", str(secrets)],
            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pods[name] = pod
        ready = self._wait_ready(pod, port)
        status: dict[str, Any] = {"observedGeneration": meta["generation"], "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "serving"} if ready else
            {"type": "Ready", "status": "False", "reason": "StartFailed", "message": "kubeinfer serve did not start"}]}
        if ready:
            status["url"] = f"http://127.0.0.1:{port}/_inference/{spec['taskType']}/{spec.get('inferenceId', name)}"
        self.cluster.call(self.cluster.emulator.update_status, INFERENCE_ENDPOINTS, meta["namespace"], name, status)

    def _secret(self, namespace: str, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (secret := self.cluster.get(SECRETS, namespace, name)) is None:
            assert time.monotonic() < deadline, f"Secret {name} never came"
            time.sleep(0.05)
        return secret

    @staticmethod
    def _wait_ready(pod: subprocess.Popen, port: int) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pod.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return True
            time.sleep(0.1)
        return False

    def stop(self, name: str) -> None:
        pod = self.pods.pop(name, None)
        if pod is not None and pod.poll() is None:
            pod.terminate()
            pod.communicate(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.pods):
            self.stop(name)


def allow_admin(spec: dict[str, Any]) -> tuple[bool, str]:
    return spec.get("user") == "root", "RBAC: allowed"


@contextlib.contextmanager
def gateway_front(root: Path) -> Iterator[tuple[str, dict[str, str], EmulatedCluster]]:
    with EmulatedCluster() as cluster:
        pods = ServePods(cluster, root)

        def configure() -> None:
            cluster.emulator.tokens[ADMIN] = {"username": "root", "uid": "u-1", "groups": ["system:masters"]}
            cluster.emulator.access_policy = allow_admin
            cluster.emulator.on_change(pods)
            for namespace in (NS, RELEASE_NS):
                cluster.emulator.ensure_namespace(namespace)

        cluster.call(configure)
        app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02,
                                region_policy_namespace=RELEASE_NS)
        try:
            with ServedFake(app) as gateway:
                yield gateway.url, {"bearer_auth": ADMIN}, cluster
        finally:
            pods.stop_all()


@dataclass
class Front:
    name: str
    es: Elasticsearch
    providers: Providers
    url: str
    auth: dict[str, str]
    cluster: EmulatedCluster | None = None


@pytest.fixture(scope="module", params=["local", "gateway"])
def front(request, tmp_path_factory) -> Iterator[Front]:
    root = tmp_path_factory.mktemp(f"es95-{request.param}")
    with providers() as fakes, contextlib.ExitStack() as stack:
        if request.param == "local":
            local = stack.enter_context(LocalMode(state_dir=root / "state"))
            url, auth, cluster = local.url, {}, None
        else:
            url, auth, cluster = stack.enter_context(gateway_front(root))
        es = stack.enter_context(Elasticsearch(url, request_timeout=90, **auth))
        yield Front(request.param, es, fakes, url, auth, cluster)


@contextlib.contextmanager
def pod_client(front: Front, name: str) -> Iterator[Elasticsearch]:
    """A client of the endpoint's own ``kubeinfer serve``, as one behind a Gateway API route
    reaches it, bypassing the gateway."""
    url = httpx.URL(front.cluster.get(INFERENCE_ENDPOINTS, NS, name)["status"]["url"])
    with Elasticsearch(f"{url.scheme}://{url.netloc.decode()}", request_timeout=30) as es:
        yield es


def sse_data(text: str) -> list[Any]:
    """The ``data`` of each Server-Sent Event, JSON-decoded but for ``[DONE]``."""
    events = [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


# ---- the tests -----------------------------------------------------------------------------

def test_put_openai_with_client_credentials_embeds_with_the_token(front):
    openai = front.providers.openai
    created = front.es.inference.put_openai(
        task_type="text_embedding", openai_inference_id="oauth-embeddings", service="openai",
        service_settings={"model_id": "text-embedding-3-small", "url": f"{openai.url}/v1/embeddings",
                          "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                          "scopes": ["inference.read", "inference.write"], "token_url": f"{openai.url}/oauth2/token",
                          "similarity": "DOT_PRODUCT"})
    settings = created["service_settings"]
    assert (settings["client_id"], settings["scopes"], settings["token_url"]) == (
        CLIENT_ID, ["inference.read", "inference.write"], f"{openai.url}/oauth2/token")
    assert settings["similarity"] == "dot_product"
    assert CLIENT_SECRET not in json.dumps(created.body)
    [shown] = front.es.inference.get(inference_id="oauth-embeddings")["endpoints"]
    assert CLIENT_SECRET not in json.dumps(shown)
    assert shown["service_settings"]["similarity"] == "dot_product"

    answer = front.es.inference.text_embedding(inference_id="oauth-embeddings", input=["hello", "kubeinfer"])
    assert answer.body == {"text_embedding": [{"embedding": [5.0, 0.5]}, {"embedding": [9.0, 0.5]}]}
    exchange = openai.fake.to("/oauth2/token")[-1]
    assert exchange.form["scope"] == "inference.read inference.write"
    call = openai.fake.to("/v1/embeddings")[-1]
    assert call.json["input"] == ["hello", "kubeinfer"]
    assert call.headers["authorization"] == f"Bearer {front.providers.tokens.issued[-1]}"
    if front.cluster is not None:  # the secret went to a Secret, the resource holds a reference
        spec = front.cluster.get(INFERENCE_ENDPOINTS, NS, "oauth-embeddings")["spec"]
        assert set(spec["serviceSettings"]["client_secret"]) == {"secretKeyRef"}
        assert CLIENT_SECRET not in json.dumps(spec)

    # The secret rotated: the next token is asked for with the new one.
    rotated = "client-secret-rotated-6d1e0b9a"
    front.providers.tokens.client_secret = rotated
    updated = front.es.inference.update(inference_id="oauth-embeddings", task_type="text_embedding",
                                        inference_config={"service_settings": {"client_secret": rotated}})
    assert rotated not in json.dumps(updated.body) and updated["service_settings"]["client_id"] == CLIENT_ID
    again = front.es.inference.text_embedding(inference_id="oauth-embeddings", input="hi", timeout="20s")
    assert again.body == {"text_embedding": [{"embedding": [2.0, 0.5]}]}
    assert openai.fake.to("/v1/embeddings")[-1].headers["authorization"] == (
        f"Bearer {front.providers.tokens.issued[-1]}")


def test_rerank_takes_top_n_and_return_documents_from_the_request(front):
    cohere = front.providers.cohere
    front.es.inference.put(task_type="rerank", inference_id="cohere-rerank", timeout="50s", inference_config={
        "service": "cohere", "service_settings": {"api_key": "co-key-0123456789", "model_id": "rerank-english-v3.0",
                                                  "url": cohere.url}})
    answer = front.es.inference.rerank(inference_id="cohere-rerank", query="which is longest", input=DOCUMENTS,
                                       top_n=2, return_documents=True)
    assert answer.body == {"rerank": [{"index": 1, "relevance_score": 0.25, "text": "the quick brown fox jumps"},
                                      {"index": 0, "relevance_score": 0.05, "text": "a cat"}]}
    sent = cohere.fake.to("/v1/rerank")[-1].json
    assert sent == {"model": "rerank-english-v3.0", "query": "which is longest", "documents": DOCUMENTS,
                    "top_n": 2, "return_documents": True}

    bare = front.es.inference.rerank(inference_id="cohere-rerank", query="which", input=DOCUMENTS, top_n=1,
                                     return_documents=False)
    assert bare.body == {"rerank": [{"index": 1, "relevance_score": 0.25}]}
    assert cohere.fake.to("/v1/rerank")[-1].json["return_documents"] is False
    calls = len(cohere.fake.to("/v1/rerank"))
    with pytest.raises(BadRequestError) as refused:
        front.es.inference.rerank(inference_id="cohere-rerank", query="which", input=DOCUMENTS, top_n=0)
    assert refused.value.body["error"]["reason"] == (
        "Validation Failed: 1: Field [top_n] must be greater than or equal to 1;")
    assert len(cohere.fake.to("/v1/rerank")) == calls
    if front.cluster is not None:
        with pod_client(front, "cohere-rerank") as pod:
            direct = pod.inference.rerank(inference_id="cohere-rerank", query="which", input=DOCUMENTS, top_n=1,
                                          return_documents=True)
        assert direct.body == {"rerank": [{"index": 1, "relevance_score": 0.25, "text": DOCUMENTS[1]}]}
        assert cohere.fake.to("/v1/rerank")[-1].json["top_n"] == 1


def test_chat_completion_reasoning_streams_back_through_perform_request(front):
    openai = front.providers.openai
    front.es.inference.put(task_type="chat_completion", inference_id="reasoning-chat", inference_config={
        "service": "openai", "service_settings": {"api_key": "sk-chat-0123456789", "model_id": "o4-mini",
                                                  "url": f"{openai.url}/v1/chat/completions"}})
    body = {"messages": [
        {"role": "user", "content": "Who shaves the barber?"},
        {"role": "assistant", "content": "Such a barber cannot exist.",
         "reasoning": "If he shaves himself, he should not.",
         "reasoning_details": [{"type": "reasoning.text", "text": "If he shaves himself...", "signature": "sig_1"}]},
        {"role": "user", "content": "What if there are 2 barbers?"}],
        "reasoning": {"effort": "HIGH", "summary": "concise"}}
    # The client (9.5) has no method for the unified chat stream.
    answer = front.es.perform_request("POST", "/_inference/chat_completion/reasoning-chat/_stream", body=body,
                                      headers={"accept": "text/event-stream", "content-type": "application/json"})
    assert answer.meta.status == 200
    events = sse_data(answer.body if isinstance(answer.body, str) else answer.body.decode())
    assert events[-1] == "[DONE]"
    deltas = [choice["delta"] for event in events[:-1] for choice in event.get("choices", [])]
    assert "".join(d.get("reasoning", "") for d in deltas) == "Two barbers can shave each other."
    assert "".join(d.get("content") or "" for d in deltas) == "Each shaves the other."
    sent = openai.fake.to("/v1/chat/completions")[-1].json
    assert sent["stream"] is True and sent["reasoning_effort"] == "high"
    assert sent["messages"][1] == {"role": "assistant", "content": "Such a barber cannot exist."}
    if front.cluster is not None:
        with pod_client(front, "reasoning-chat") as pod:
            direct = pod.perform_request("POST", "/_inference/chat_completion/reasoning-chat/_stream", body=body,
                                         headers={"accept": "text/event-stream", "content-type": "application/json"})
        assert direct.body == answer.body


def test_embedding_task_takes_content_objects_with_an_image(front):
    jina = front.providers.jina
    front.es.inference.put(task_type="embedding", inference_id="jina-multimodal", inference_config={
        "service": "jinaai", "service_settings": {"api_key": "jina-key-0123456789", "model_id": "jina-embeddings-v4",
                                                  "url": jina.url, "embedding_type": "FLOAT"},
        "task_settings": {"input_type": "INGEST"}})
    [shown] = front.es.inference.get(task_type="embedding", inference_id="jina-multimodal")["endpoints"]
    assert (shown["service_settings"]["embedding_type"], shown["task_settings"]) == ("float", {"input_type": "ingest"})
    answer = front.es.inference.embedding(inference_id="jina-multimodal", embedding={"input": [
        "plain text",
        {"content": {"type": "image", "format": "base64", "value": RED}},
        {"content": [{"type": "text", "value": "a caption"}, {"type": "image", "format": "base64", "value": RED}]},
    ]})
    assert answer.body == {"embeddings": [{"embedding": [0.0, 1.0]}, {"embedding": [1.0, 1.0]},
                                          {"embedding": [2.0, 1.0]}]}
    sent = jina.fake.to("/v1/embeddings")[-1].json
    assert sent == {"model": "jina-embeddings-v4", "embedding_type": "float", "task": "retrieval.passage",
                    "input": [{"text": "plain text"}, {"image": RED},
                              {"content": [{"text": "a caption"}, {"image": RED}]}]}

    # The request's own input_type (in any letter case) over the endpoint's, through the generic call.
    searched = front.es.inference.inference(task_type="embedding", inference_id="jina-multimodal",
                                            input=[{"content": {"type": "text", "value": "red"}}],
                                            input_type="SEARCH")
    assert searched.body == {"embeddings": [{"embedding": [0.0, 1.0]}]}
    sent = jina.fake.to("/v1/embeddings")[-1].json
    assert (sent["input"], sent["task"]) == ([{"text": "red"}], "retrieval.query")


# Local mode loads the model in its own process; through the gateway a pod's ``kubeinfer
# serve`` runs the same loading code, at the cost of a second torch start-up.
@pytest.mark.parametrize("front", ["local"], indirect=True)
def test_embedding_task_on_a_local_clip_model(front, tiny_clip):
    front.es.inference.put(task_type="embedding", inference_id="tiny-clip", inference_config={
        "service": "elasticsearch",
        "service_settings": {"model_id": str(tiny_clip), "num_allocations": 1, "num_threads": 1}})
    answer = front.es.inference.embedding(inference_id="tiny-clip", embedding={"input": [
        "a red square", {"content": {"type": "image", "format": "base64", "value": RED}}]})
    vectors = [e["embedding"] for e in answer["embeddings"]]
    assert [len(v) for v in vectors] == [PROJECTION_DIM, PROJECTION_DIM]
    assert vectors[0] != vectors[1]
    with pytest.raises(ApiError) as refused:
        front.es.inference.embedding(inference_id="tiny-clip", embedding={"input": [
            {"content": {"type": "audio", "format": "base64", "value": data_uri(b"xyz", "audio/wav")}}]})
    assert refused.value.meta.status == 400
    assert refused.value.body["error"]["reason"] == (
        "The elasticsearch service does not support embedding with audio inputs")


def test_region_policy_is_set_read_and_deleted_with_the_client(front):
    put = front.es.inference.put_region_policy(region_policy={"allowed_geos": ["us", "eu"]}, force=True)
    assert put["region_policy"] == {"allowed_geos": ["us", "eu"]}
    assert front.es.inference.get_region_policy().body == put.body
    assert front.es.inference.delete_region_policy()["acknowledged"] is True
    with pytest.raises(ApiError) as missing:
        front.es.inference.get_region_policy()
    assert missing.value.meta.status == 404
