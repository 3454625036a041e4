"""A provider whose HTTP answer is malformed before its body: more header lines than a
client reads, a header line longer than one, a status line that is not one. Local mode
must answer 502, in Elasticsearch's shape, naming the provider, on inference and on a
stream alike; never a 500 with a traceback in its log. The fake provider is a plain
socket server (no HTTP library would send such answers) that records each request it
read, so the test knows the call reached it.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from local_mode import LocalMode, free_port

ANSWERS = {
    "too-many-headers": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: a\r\n" * 5_000,
    "header-line-too-long": b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n",
    "not-a-status-line": b"HELLO there\r\n\r\n",
}
GOOD_EMBEDDINGS = json.dumps({"object": "list", "model": "text-embedding-3-small", "usage": {},
                              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]}).encode()
GOOD_CHAT = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}).encode()


class MalformedProvider:
    """Answers OpenAI's embeddings and chat completions well until ``answer`` names a
    malformed answer."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer: str | None = None
        self.received: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            self.received.append(request)
            try:
                if self.answer is None:
                    good = GOOD_CHAT if b"/chat/completions " in request.split(b"\r\n", 1)[0] else GOOD_EMBEDDINGS
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(good) + good)
                else:
                    conn.sendall(ANSWERS[self.answer])
            except OSError:
                pass

    def close(self) -> None:
        self._server.close()


@pytest.fixture(scope="module")
def provider():
    served = MalformedProvider()
    yield served
    served.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory, provider):
    with LocalMode(state_dir=tmp_path_factory.mktemp("malformed-http")) as running:
        for task in ("text_embedding", "completion"):
            response = running.client.put(f"/_inference/{task}/malformed-{task}", json={
                "service": "openai", "service_settings": {
                    "api_key": "sk-malformed", "model_id": "m",
                    "url": f"{provider.url}/v1" if task == "text_embedding" else f"{provider.url}/v1/chat/completions"}},
                params={"timeout": "5s"})
            assert response.status_code == 200, response.text
        yield running


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_malformed_provider_answer_is_a_502_not_a_500(local, provider, answer):
    provider.answer = answer
    before = len(provider.received)
    try:
        response = local.client.post("/_inference/text_embedding/malformed-text_embedding?timeout=10s",
                                     json={"input": "hello"})
    finally:
        provider.answer = None
    assert len(provider.received) > before
    body = response.json()
    assert response.status_code == 502, response.text
    assert body["status"] == 502 and "openai" in body["error"]["reason"]
    assert "Traceback" not in local.text


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_malformed_provider_answer_to_a_stream_is_an_error_not_a_500(local, provider, answer):
    provider.answer = answer
    try:
        response = local.client.post("/_inference/completion/malformed-completion/_stream?timeout=10s",
                                     json={"input": "hello"})
    finally:
        provider.answer = None
    assert response.status_code == 502, response.text
    assert "event: error" in response.text and "openai" in response.text
    assert "Traceback" not in local.text
