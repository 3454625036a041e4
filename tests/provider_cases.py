"""One provider pair as a test case: the settings, what the fake provider answers, and what
the provider must receive and the client must get back. The pair tables of the provider
tests are made of these, and ``serve_case`` runs one through ``kubeinfer serve``'s app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from fake_providers import FakeProvider, Received, Reply, backend_for, post_through_server

KEY = "sk-test-0123456789abcdef"
VEC, VEC2 = [0.1, -0.2, 0.3], [0.4, 0.5, -0.6]
EMBEDDED = {"text_embedding": [{"embedding": VEC}, {"embedding": VEC2}]}
MESSAGES = [{"role": "user", "content": "hello"}, {"role": "user", "content": "world"}]
BEARER = {"authorization": f"Bearer {KEY}"}


@dataclass
class Case:
    service_settings: dict
    path: str
    reply: Any
    expect_body: dict
    expect_answer: dict
    task_settings: dict | None = None
    input: list = field(default_factory=lambda: ["hello", "world"])
    query: str | None = None
    input_type: str | None = None
    headers: dict = field(default_factory=lambda: dict(BEARER))
    host: str | None = None
    query_params: dict = field(default_factory=dict)


def openai_embeddings(*vectors):
    return {"object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2},
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}


def openai_chat(text):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


async def serve_case(service: str, task: str, case: Case) -> tuple[httpx.Response, Received]:
    """The client's answer, and the one request the fake provider received."""
    fake = FakeProvider().on(case.path, Reply(json=case.reply))
    backend = backend_for(fake, service, task, case.service_settings, case.task_settings)
    body: dict[str, Any] = {"input": case.input}
    if case.query is not None:
        body["query"] = case.query
    if case.input_type is not None:
        body["input_type"] = case.input_type
    response = await post_through_server(backend, body)
    assert response.status_code == 200, response.text
    [received] = fake.received
    return response, received
