"""Local mode under hostile input, through HTTP as an attacker sends it: bodies that are
too big, not JSON, or JSON that breaks parsers; secret references that point outside
the secrets folder; ids that smuggle a newline; a flood of requests to unknown ids.
Every answer is a 4xx in Elasticsearch's shape, never a 5xx, and no secret leaks.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from fake_providers import Reply
from local_mode import LocalMode, ServedFake, openai_embeddings, openai_fake

SECRET = "sk-hostile-0123456789abcdef"


@pytest.fixture(scope="module")
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory, provider):
    root = tmp_path_factory.mktemp("hostile")
    (root / "secrets" / "openai").mkdir(parents=True)
    (root / "secrets" / "openai" / "api-key").write_text(SECRET + "\n")
    # A file beside the secrets folder that no reference may reach.
    (root / "outside").write_text("not-a-secret-but-private\n")
    env = {"KUBEINFER_HTTP_MAX_CONTENT_LENGTH": "64kb"}
    with LocalMode("--secrets-dir", str(root / "secrets"), state_dir=root / "state", env=env) as running:
        running.root = root
        yield running


def es_error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["error"]["root_cause"][0]["type"] == body["error"]["type"]
    assert body["status"] == response.status_code
    return response.status_code, body["error"]["type"], body["error"]["reason"]


def create_body(provider, api_key) -> dict:
    return {"service": "openai", "service_settings": {
        "api_key": api_key, "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}}


@pytest.fixture(scope="module")
def embeddings(local, provider):
    response = local.client.put("/_inference/text_embedding/hostile-emb", json=create_body(provider, "sk-plain"))
    assert response.status_code == 200, response.text
    return "/_inference/text_embedding/hostile-emb"


# ---- secret references -------------------------------------------------------------------
@pytest.mark.parametrize("ref", [
    {"name": "..", "key": "outside"},
    {"name": "openai", "key": "../../outside"},
    {"name": "openai", "key": ".."},
    {"name": "../secrets/openai", "key": "api-key"},
    {"name": "openai", "key": "/etc/hostname"},
    {"name": "Openai", "key": "api-key"},
])
def test_secret_reference_outside_the_secrets_folder_is_refused(local, provider, ref):
    response = local.client.put("/_inference/text_embedding/escape",
                                json=create_body(provider, {"secretKeyRef": ref}))
    status, kind, reason = es_error(response)
    assert status == 400
    assert "not-a-secret-but-private" not in response.text
    # Nothing reached the provider with whatever was read.
    assert not any("not-a-secret" in (r.headers.get("authorization") or "")
                   for r in provider.fake.to("/v1/embeddings"))
    assert local.client.get("/_inference/escape").status_code == 404


def test_missing_secret_file_says_where_it_looked(local, provider):
    response = local.client.put("/_inference/text_embedding/no-secret",
                                json=create_body(provider, {"secretKeyRef": {"name": "absent", "key": "api-key"}}))
    status, _, reason = es_error(response)
    assert status == 400
    assert str(local.root / "secrets" / "absent" / "api-key") in reason


def test_secret_reference_inside_the_folder_is_read(local, provider):
    response = local.client.put("/_inference/text_embedding/by-ref",
                                json=create_body(provider, {"secretKeyRef": {"name": "openai", "key": "api-key"}}))
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    assert provider.fake.to("/v1/embeddings")[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert local.client.delete("/_inference/by-ref").status_code == 200


# ---- bodies ------------------------------------------------------------------------------
def test_body_over_the_limit_is_a_413_before_it_is_read(local, embeddings):
    big = json.dumps({"input": "x" * 200_000})
    response = local.client.post(embeddings, content=big, headers={"Content-Type": "application/json"})
    assert es_error(response)[:2] == (413, "content_too_long_exception")


def test_chunked_body_over_the_limit_is_a_413(local, embeddings):
    def chunks():
        yield b'{"input": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    response = local.client.post(embeddings, content=chunks(), headers={"Content-Type": "application/json"})
    assert es_error(response)[:2] == (413, "content_too_long_exception")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/yaml"])
def test_body_that_is_not_json_by_content_type_is_a_406(local, embeddings, content_type):
    response = local.client.post(embeddings, content=b'{"input": "hi"}', headers={"Content-Type": content_type})
    assert response.status_code == 406
    assert response.json() == {"error": f"Content-Type header [{content_type}] is not supported", "status": 406}


def test_elasticsearch_versioned_media_type_is_json(local, embeddings):
    response = local.client.post(embeddings, content=b'{"input": "hi"}', headers={
        "Content-Type": "application/vnd.elasticsearch+json; compatible-with=8"})
    assert response.status_code == 200, response.text


HOSTILE_BODIES = [
    pytest.param('{"input": "\\ud800"}', id="lone-high-surrogate"),
    pytest.param('{"input": ["ok", "\\udfff"]}', id="lone-low-surrogate-in-list"),
    pytest.param('{"\\ud800": "x"}', id="surrogate-key"),
    pytest.param('{"input": "a", "task_settings": ' + "[" * 1500 + "]" * 1500 + "}", id="nested-1500"),
    pytest.param('{"input": "a", "task_settings": {"x": ' + "[" * 500 + "]" * 500 + "}}", id="nested-500"),
    pytest.param('{"input": "a", "top_n": ' + "9" * 20_000 + "}", id="int-20000-digits"),
    pytest.param('{"input": "a", "top_n": 1e400}', id="float-overflow"),
    pytest.param('{"input": "a", "top_n": NaN}', id="nan"),
    pytest.param('{"input": "a", "top_n": -Infinity}', id="infinity"),
    pytest.param(b'{"input": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
    pytest.param(b'{"input": "\xff"}', id="invalid-utf8"),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_json_is_a_400_on_inference(local, embeddings, body):
    response = local.client.post(embeddings, content=body, headers={"Content-Type": "application/json"})
    status, kind, _ = es_error(response)
    assert (status, kind) == (400, "parse_exception")


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_json_is_a_400_on_create(local, body):
    response = local.client.put("/_inference/text_embedding/hostile-create", content=body,
                                headers={"Content-Type": "application/json"})
    status, kind, _ = es_error(response)
    assert (status, kind) == (400, "parse_exception")


def test_hostile_json_in_settings_is_a_400_on_update(local, embeddings):
    body = '{"service_settings": {"dimensions": ' + "1" * 5000 + "}}"
    response = local.client.put("/_inference/hostile-emb/_update", content=body,
                                headers={"Content-Type": "application/json"})
    assert es_error(response)[:2] == (400, "parse_exception")


def test_body_inference_id_must_match_the_path(local, provider):
    body = {**create_body(provider, "sk-plain"), "inference_id": "other"}
    response = local.client.put("/_inference/text_embedding/mismatch", json=body)
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "status_exception")
    assert "[mismatch]" in reason and "[other]" in reason
    assert local.client.get("/_inference/mismatch").status_code == 404
    assert local.client.get("/_inference/other").status_code == 404


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00", "%E2%80%8B"])
def test_id_with_a_trailing_control_character_is_refused(local, provider, suffix):
    response = local.client.put(f"/_inference/text_embedding/trailing{suffix}", json=create_body(provider, "sk-x"))
    assert es_error(response)[:2] == (400, "validation_exception")
    for method in ("GET", "DELETE"):
        response = local.client.request(method, f"/_inference/trailing{suffix}")
        assert es_error(response)[0] == 404
    response = local.client.post(f"/_inference/text_embedding/trailing{suffix}", json={"input": "x"})
    assert es_error(response)[0] == 404


def test_too_many_inputs_are_refused_before_reaching_the_provider(local, provider, embeddings):
    before = len(provider.fake.to("/v1/embeddings"))
    response = local.client.post(embeddings, json={"input": ["x"] * 5000})
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "action_request_validation_exception")
    assert "[5000]" in reason
    assert len(provider.fake.to("/v1/embeddings")) == before


@pytest.mark.parametrize("threads", [3, 64, 100000])
def test_num_threads_is_a_power_of_two_at_most_32(local, threads):
    response = local.client.put("/_inference/text_embedding/threads", json={
        "service": "elasticsearch",
        "service_settings": {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "num_allocations": 1,
                             "num_threads": threads}})
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "validation_exception")
    assert "num_threads" in reason


# ---- metrics -----------------------------------------------------------------------------
def _metric_ids(text: str) -> set[str]:
    return set(re.findall(r'kubeinfer_inference_requests_total\{inference_id="([^"]*)"', text))


def test_unknown_ids_share_one_metrics_label(local, embeddings):
    for i in range(50):
        local.client.post(f"/_inference/text_embedding/nobody-{i}", json={"input": "x"})
    assert local.client.post(embeddings, json={"input": "x"}).status_code == 200
    ids = _metric_ids(local.client.get("/metrics").text)
    assert not any(i.startswith("nobody-") for i in ids)
    assert {"_unknown", "hostile-emb"} <= ids


# ---- provider answers --------------------------------------------------------------------
def test_provider_answer_with_nan_is_a_502(local, provider):
    fake = provider.fake
    fake.on("/nan/v1/embeddings", Reply(raw=b'{"object": "list", "data": [{"index": 0, "embedding": [NaN, 1.0]}]}',
                                        content_type="application/json"))
    body = create_body(provider, "sk-nan")
    body["service_settings"]["url"] = f"{provider.url}/nan/v1"
    body["service_settings"]["dimensions"] = 2
    response = local.client.put("/_inference/text_embedding/nan-provider?timeout=5s", json=body)
    # The start-up check already reads the bad answer: the create fails cleanly.
    status, kind, reason = es_error(response)
    assert status in (400, 502)
    assert "NaN" in reason or "not JSON" in reason or "parse" in reason


# ---- secrets in provider errors ----------------------------------------------------------
KEY = "sk-Echo0123456789abcdefXYZ"


def _echoing(shape):
    def reply(received):
        key = received.headers.get("authorization", "").removeprefix("Bearer ")
        return Reply(401, {"error": {"message": shape(key), "type": "invalid_request_error"}})
    return reply


@pytest.mark.parametrize("shape", [
    pytest.param(lambda key: f"Incorrect API key provided: bearer {key.lower()}", id="lower-cased"),
    pytest.param(lambda key: f"Incorrect API key provided: {key.upper()}", id="upper-cased"),
    pytest.param(lambda key: "x" * 990 + key, id="cut-at-1000"),
    pytest.param(lambda key: f"key ending in {key[-10:]} is revoked", id="fragment"),
])
def test_provider_error_never_carries_the_key(local, provider, shape):
    path = f"/echo{abs(hash(shape)) % 10_000}/v1/embeddings"
    provider.fake.on(path, _echoing(shape))
    body = create_body(provider, KEY)
    body["service_settings"]["url"] = provider.url + path.removesuffix("/embeddings")
    response = local.client.put("/_inference/text_embedding/echo", json=body)
    status, _, reason = es_error(response)
    assert status == 400
    assert "[redacted]" in reason
    text = response.text.lower()
    for i in range(len(KEY) - 7):
        assert KEY[i:i + 8].lower() not in text
    assert KEY[-8:].lower() not in local.text.lower()


# ---- where secrets may be sent -----------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.170.2/v1",
    "http://[fd00:ec2::254]/v1",
    "http://[fe80::1]:8080/v1",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://[::ffff:169.254.169.254]/v1",
])
def test_provider_url_at_a_link_local_or_metadata_address_is_refused(local, provider, url):
    body = create_body(provider, "sk-never-sent")
    body["service_settings"]["url"] = url
    response = local.client.put("/_inference/text_embedding/metadata?timeout=5s", json=body)
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "validation_exception")
    assert "link-local" in reason and "[url]" in reason
    assert local.client.get("/_inference/metadata").status_code == 404


# ---- broken provider streams and connections ---------------------------------------------
def _chat_chunk(text: str) -> str:
    return json.dumps({"id": "c-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def test_provider_stream_cut_before_its_end_marker_is_an_error(local, provider):
    provider.fake.on("/cut/v1/chat/completions", lambda r: Reply(events=[(None, _chat_chunk("Bon")),
                                                                          (None, _chat_chunk("jour"))])
                     if r.json.get("stream") else Reply(json={"id": "c", "object": "chat.completion", "choices": [
                         {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}))
    body = {"service": "openai", "service_settings": {"api_key": "sk-cut", "model_id": "gpt-4o-mini",
                                                      "url": f"{provider.url}/cut/v1"}}
    assert local.client.put("/_inference/completion/cut", json=body).status_code == 200
    streamed = local.client.post("/_inference/completion/cut/_stream", json={"input": "hi"})
    assert "event: error" in streamed.text
    assert "data: [DONE]" not in streamed.text
    assert "end marker" in streamed.text


def test_a_reset_connection_is_named_a_reset_not_a_timeout(local, tmp_path):
    import socket
    import struct
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def reset_every_connection():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=reset_every_connection, daemon=True).start()
    try:
        body = {"service": "openai", "service_settings": {
            "api_key": "sk-reset", "model_id": "text-embedding-3-small",
            "url": f"http://127.0.0.1:{server.getsockname()[1]}/v1"}}
        response = local.client.put("/_inference/text_embedding/reset?timeout=20s", json=body)
    finally:
        server.close()
    status, _, reason = es_error(response)
    assert status in (400, 408, 502)
    assert "ConnectionReset" in reason
    assert "Timeout" not in reason


def test_a_429_makes_every_request_of_the_endpoint_back_off(local, provider):
    answered = {"check": False}

    def storm(received):
        if not answered["check"]:  # the start-up check of the create goes through
            answered["check"] = True
            return Reply(json=openai_embeddings([1.0, 0.0]))
        return Reply(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                     headers={"Retry-After": "30"})

    provider.fake.on("/storm/v1/embeddings", storm)
    body = create_body(provider, "sk-storm")
    body["service_settings"]["url"] = f"{provider.url}/storm/v1"
    assert local.client.put("/_inference/text_embedding/storm", json=body).status_code == 200
    calls = len(provider.fake.to("/storm/v1/embeddings"))
    first = local.client.post("/_inference/text_embedding/storm?timeout=5s", json={"input": "a"})
    assert es_error(first)[0] == 429
    # The provider asked for 30s: within the next requests' deadlines nobody calls it again.
    for _ in range(3):
        again = local.client.post("/_inference/text_embedding/storm?timeout=5s", json={"input": "b"})
        assert es_error(again)[0] == 429
    assert len(provider.fake.to("/storm/v1/embeddings")) == calls + 1


@pytest.mark.parametrize("timeout", ["99999999999d", "1" * 400 + "s", "-1", "0.000001nanos"])
def test_extreme_timeouts_are_honoured_or_refused_never_a_5xx(local, embeddings, timeout):
    response = local.client.post(f"{embeddings}?timeout={timeout}", json={"input": "x"})
    assert response.status_code < 500, response.text
