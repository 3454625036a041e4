"""Where a provider request may go, through HTTP to the local-mode app as a caller sends
it: request-time parameters of a ``custom`` endpoint never choose its scheme, host or
port, and no connection is made to a link-local or cloud metadata address however the
URL spells it or whatever a name resolves to.

Listeners are on 127.0.0.1 only. Names are mapped to addresses by a stand-in resolver,
and every socket's ``connect`` is watched: a dial anywhere but loopback is recorded and
refused before it is made, so even a failing test never reaches another address.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest
from fake_providers import FakeProvider, Reply
from local_mode import ServedFake, openai_embeddings

from kubeinfer.config import ServerSettings
from model_server.backends.registry import create_backend
from model_server.gateway.app import create_gateway_app
from model_server.gateway.local_store import LocalEndpointStore

SECRET = "sk-destination-0123456789"
# Names the stand-in resolver answers, and the address each resolves to.
NAMES = {"metadata.test": "169.254.169.254", "metadata-v6.test": "fe80::1", "provider.test": "127.0.0.1"}


@pytest.fixture
def dialled(monkeypatch) -> list[str]:
    """Addresses outside loopback a socket tried to connect to (refused before connecting)."""
    attempts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in NAMES:
            address = NAMES[name]
            kind = socket.AF_INET6 if ":" in address else socket.AF_INET
            where = (address, int(port or 0)) if kind == socket.AF_INET else (address, int(port or 0), 0, 0)
            return [(kind, socket.SOCK_STREAM, 6, "", where)]
        return real_getaddrinfo(host, port, family, type, proto, flags)

    def connect(sock, address):
        if isinstance(address, tuple) and not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            attempts.append(address[0])
            raise ConnectionRefusedError(f"the test refused a dial of {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def embeddings_provider() -> FakeProvider:
    fake = FakeProvider()
    fake.on("/v1/embeddings", lambda r: Reply(json=openai_embeddings(*[[1.0, 0.5] for _ in r.json["input"]])))
    return fake


@pytest.fixture
def provider():
    with ServedFake(embeddings_provider()) as served:
        yield served


@pytest.fixture
def listener():
    """Whoever should never hear from the endpoint: it records what reaches it."""
    with ServedFake(embeddings_provider()) as served:
        yield served


def local_app(**settings):
    server = ServerSettings(**settings)
    store = LocalEndpointStore(backend_factory=lambda config: create_backend(config, settings=server))
    return create_gateway_app(store)


@pytest.fixture
async def local():
    app = local_app()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://local") as client:
            yield client


def custom_body(url: str, parameters: dict, *, secret_in: str = "header") -> dict:
    settings = {
        "secret_parameters": {"api_key": SECRET},
        "url": url,
        "headers": {"api-key": "${api_key}"} if secret_in == "header" else {},
        "request": "{\"input\": ${input}" + (", \"key\": ${api_key}}" if secret_in == "body" else "}"),
        "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}},
    }
    return {"service": "custom", "service_settings": settings, "task_settings": {"parameters": parameters}}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["status"] == response.status_code, body
    return response.status_code, body["error"]["type"], body["error"]["reason"]


# ---- custom: the request's parameters fill in the path, never the destination --------------

@pytest.mark.parametrize("secret_in", ["header", "body"])
@pytest.mark.parametrize("template, stored, given", [
    # the host and port from a parameter the creator set, which the request overrides
    ("http://${resource}/v1/embeddings", {"resource": "127.0.0.1:{A}"}, {"resource": "127.0.0.1:{B}/x?y="}),
    # the rest of the URL from a parameter that can also hold a user name and another host
    ("http://127.0.0.1:{A}${path}", {"path": "/v1/embeddings"}, {"path": "@127.0.0.1:{B}/v1/embeddings"}),
    # the scheme too
    ("${scheme}://127.0.0.1:{A}/v1/embeddings", {"scheme": "http"}, {"scheme": "http://127.0.0.1:{B}/?"}),
])
async def test_request_parameters_never_send_a_custom_endpoints_secret_to_another_host(
        local, provider, listener, template, stored, given, secret_in):
    def fill(value: str) -> str:
        return value.replace("{A}", str(provider.port)).replace("{B}", str(listener.port))

    body = custom_body(fill(template), {k: fill(v) for k, v in stored.items()}, secret_in=secret_in)
    created = await local.put("/_inference/text_embedding/templated", json=body)
    assert created.status_code == 200, created.text
    answer = await local.post("/_inference/text_embedding/templated", json={
        "input": ["hello"], "task_settings": {"parameters": {k: fill(v) for k, v in given.items()}}})
    status, kind, reason = error_of(answer)
    assert (status, kind) == (400, "validation_exception"), answer.text
    assert "scheme, host or port" in reason and SECRET not in reason
    assert listener.fake.received == []
    # The creator's own destination still answers.
    same = await local.post("/_inference/text_embedding/templated", json={"input": ["hello"]})
    assert same.status_code == 200, same.text


async def test_request_parameters_still_fill_in_the_path_and_query(local, provider, listener):
    body = custom_body(f"http://127.0.0.1:{provider.port}/v1/${{what}}?tenant=${{tenant}}",
                       {"what": "embeddings", "tenant": "a"})
    assert (await local.put("/_inference/text_embedding/templated", json=body)).status_code == 200
    answer = await local.post("/_inference/text_embedding/templated", json={
        "input": ["hello"], "task_settings": {"parameters": {"tenant": "b c"}}})
    assert answer.status_code == 200, answer.text
    assert provider.fake.to("/v1/embeddings")[-1].query == {"tenant": "b c"}


# ---- link-local and metadata addresses, however they are written --------------------------

@pytest.mark.parametrize("host", ["0xa9fea9fe", "2852039166", "0251.0376.0251.0376", "169.254.43518",
                                  "[64:ff9b::a9fe:a9fe]"])
async def test_other_spellings_of_a_link_local_address_are_refused_at_creation(local, dialled, host):
    response = await local.put("/_inference/text_embedding/spelled", json={"service": "openai", "service_settings": {
        "api_key": SECRET, "model_id": "text-embedding-3-small", "url": f"http://{host}/v1"}})
    status, kind, reason = error_of(response)
    assert (status, kind) == (400, "validation_exception") and "link-local" in reason
    assert dialled == []


@pytest.mark.parametrize("url", ["http://metadata.test/v1", "https://metadata.test/v1",
                                 "http://metadata-v6.test:8080/v1", "https://metadata-v6.test/v1"])
async def test_a_name_resolving_to_a_metadata_address_is_refused_before_connecting(local, dialled, url):
    response = await local.put("/_inference/text_embedding/named", json={"service": "openai", "service_settings": {
        "api_key": SECRET, "model_id": "text-embedding-3-small", "url": url}})
    status, kind, reason = error_of(response)
    assert status == 400 and "Refused to connect to [metadata" in reason and "link-local" in reason, reason
    assert SECRET not in response.text
    assert dialled == []
    assert (await local.get("/_inference/named")).status_code == 404


async def test_a_secret_parameter_spelling_a_metadata_address_is_refused_before_connecting(local, dialled):
    body = custom_body("http://${host}/latest/meta-data", {})
    body["service_settings"]["secret_parameters"]["host"] = "0xa9fea9fe"
    response = await local.put("/_inference/text_embedding/hidden", json=body)
    status, _, reason = error_of(response)
    assert status == 400 and "link-local" in reason, reason
    assert dialled == []


async def test_loopback_in_hex_and_a_name_for_it_still_connect(local, provider, dialled):
    for inference_id, host in [("hex", "0x7f000001"), ("name", "provider.test")]:
        response = await local.put(f"/_inference/text_embedding/{inference_id}", json={
            "service": "openai", "service_settings": {
                "api_key": SECRET, "model_id": "text-embedding-3-small", "url": f"http://{host}:{provider.port}/v1"}})
        assert response.status_code == 200, response.text
    assert dialled == []


async def test_allowing_link_local_addresses_lets_the_connection_be_tried(dialled):
    app = local_app(allow_link_local_urls=True)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://local") as client:
            response = await client.put("/_inference/text_embedding/allowed?timeout=5s", json={
                "service": "openai", "service_settings": {
                    "api_key": SECRET, "model_id": "text-embedding-3-small", "url": "http://metadata.test/v1"}})
    assert response.status_code >= 400
    assert "Refused to connect" not in response.text
    assert "169.254.169.254" in dialled  # tried, and stopped by the test before it was made
