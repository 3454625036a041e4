"""Reasoning in the unified chat completion API (Elasticsearch 9.4): a request's
``reasoning`` (effort, enabled, summary, exclude) becomes each provider's own control
(OpenAI's ``reasoning_effort``, Anthropic's extended ``thinking``), the model's reasoning
streams back as ``reasoning`` deltas and ``reasoning_details``, and an assistant message's
reasoning details go back to the provider that signed them."""

from __future__ import annotations

import copy
import json

import pytest

from fake_providers import FakeProvider, Reply, backend_for, post_chat
from test_chat_completion_providers import anthropic_events, chunks, deltas

KEY = "sk-test-0123456789abcdef"
OPENAI = {"api_key": KEY, "model_id": "o4-mini", "url": "https://openai.test/v1/chat/completions"}
ANTHROPIC = {"api_key": KEY, "model_id": "claude-sonnet-4-5", "url": "https://anthropic.test"}
# Elasticsearch's own example (chat_completion_unified PostChatCompletionRequestExample4).
BARBER = {
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Barber shaves all those, who do not shave "
                                                              "themselves. Who shaves the barber?"}]},
        {"role": "assistant",
         "content": [{"type": "text", "text": "This is the barber paradox. Such a barber cannot logically exist."}],
         "reasoning": "If the barber shaves himself, he should not; if he does not, he should.",
         "reasoning_details": [
             {"type": "reasoning.encrypted", "data": "[REDACTED]"},
             {"type": "reasoning.summary", "summary": "Barber shaving himself creates contradiction"},
             {"type": "reasoning.text", "text": "If the barber shaves himself, he should not; if he does not, "
                                                "he should.", "signature": "sig_123"}]},
        {"role": "user", "content": [{"type": "text", "text": "What if there are 2 barbers?"}]},
    ],
    "reasoning": {"effort": "high", "summary": "detailed", "exclude": False},
}


def openai_stream(*pieces: dict) -> Reply:
    events = [(None, json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "o4-mini",
                                 "choices": [{"index": 0, "delta": piece, "finish_reason": None}]}))
              for piece in pieces]
    return Reply(events=[*events, (None, "[DONE]")])


@pytest.mark.parametrize("reasoning,effort", [
    ({"effort": "HIGH", "summary": "concise"}, "high"),
    ({"enabled": True}, "medium"),
    ({"effort": "xhigh", "enabled": False}, "xhigh"),
    ({"enabled": False}, None),
])
async def test_openai_gets_the_reasoning_effort(reasoning, effort):
    fake = FakeProvider().on("/v1/chat/completions", openai_stream({"role": "assistant", "content": "Hi"}))
    backend = backend_for(fake, "openai", "chat_completion", OPENAI)
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hello"}], "reasoning": reasoning})
    assert response.status_code == 200, response.text
    [received] = fake.to("/v1/chat/completions")
    assert received.json.get("reasoning_effort") == effort


async def test_reasoning_streams_back_and_is_left_out_when_excluded():
    stream = openai_stream({"role": "assistant", "reasoning_content": "Two barbers can "},
                           {"reasoning_content": "shave each other."}, {"content": "Each shaves the other."})
    body = copy.deepcopy(BARBER)
    fake = FakeProvider().on("/v1/chat/completions", stream)
    got = chunks(await post_chat(backend_for(fake, "openai", "chat_completion", OPENAI), body))
    assert deltas(got)[:3] == [{"role": "assistant", "reasoning": "Two barbers can "},
                               {"reasoning": "shave each other."}, {"content": "Each shaves the other."}]
    # The assistant message's reasoning is Elasticsearch's, not OpenAI's: it is not sent on.
    [received] = fake.to("/v1/chat/completions")
    assert received.json["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "This is the barber paradox. Such a barber cannot logically exist."}]}

    body["reasoning"]["exclude"] = True
    fake = FakeProvider().on("/v1/chat/completions", stream)
    got = chunks(await post_chat(backend_for(fake, "openai", "chat_completion", OPENAI), body))
    assert deltas(got) == [{"role": "assistant"}, {"content": "Each shaves the other."}]


THINKING_STREAM = anthropic_events(
    ("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                                   "content": [], "usage": {"input_tokens": 30, "output_tokens": 1}}}),
    ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Two barbers "}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "shave each other."}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa"}}),
    ("content_block_stop", {"index": 0}),
    ("content_block_start", {"index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"}}),
    ("content_block_stop", {"index": 1}),
    ("content_block_start", {"index": 2, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"index": 2, "delta": {"type": "text_delta", "text": "Each shaves the other."}}),
    ("content_block_stop", {"index": 2}),
    ("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 60}}),
    ("message_stop", {}),
)


async def test_anthropic_thinks_with_a_budget_and_streams_its_thoughts():
    fake = FakeProvider().on("/v1/messages", Reply(events=THINKING_STREAM))
    backend = backend_for(fake, "anthropic", "chat_completion", ANTHROPIC, {"max_tokens": 20000})
    got = chunks(await post_chat(backend, BARBER))
    assert deltas(got)[:6] == [
        {"content": "", "role": "assistant"},
        {"reasoning": "Two barbers "},
        {"reasoning": "shave each other."},
        {"reasoning_details": [{"type": "reasoning.text", "text": "Two barbers shave each other.",
                                "signature": "EqQBCgIYAhIM1gbcDa", "index": 0}]},
        {"reasoning_details": [{"type": "reasoning.encrypted", "data": "EmwKAhgBEgy3va", "index": 1}]},
        {"content": "Each shaves the other."},
    ]
    [received] = fake.to("/v1/messages")
    assert received.json["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    # The signed and the redacted thoughts of the earlier answer go back before its text.
    assert received.json["messages"][1] == {"role": "assistant", "content": [
        {"type": "redacted_thinking", "data": "[REDACTED]"},
        {"type": "thinking", "thinking": "If the barber shaves himself, he should not; if he does not, he should.",
         "signature": "sig_123"},
        {"type": "text", "text": "This is the barber paradox. Such a barber cannot logically exist."}]}


async def test_anthropic_thinking_fits_under_max_tokens_or_is_refused():
    fake = FakeProvider().on("/v1/messages", Reply(events=THINKING_STREAM))
    backend = backend_for(fake, "anthropic", "chat_completion", ANTHROPIC, {"max_tokens": 4096})
    body = {"messages": [{"role": "user", "content": "hi"}], "reasoning": {"enabled": True}}
    assert (await post_chat(backend, body)).status_code == 200
    assert fake.to("/v1/messages")[0].json["thinking"] == {"type": "enabled", "budget_tokens": 4095}

    fake = FakeProvider().on("/v1/messages", Reply(events=THINKING_STREAM))
    backend = backend_for(fake, "anthropic", "chat_completion", ANTHROPIC, {"max_tokens": 512})
    response = await post_chat(backend, body)
    assert response.status_code == 400 and "max_completion_tokens" in response.text
    assert not fake.received
    # No reasoning asked for: no thinking.
    fake = FakeProvider().on("/v1/messages", Reply(events=THINKING_STREAM))
    backend = backend_for(fake, "anthropic", "chat_completion", ANTHROPIC, {"max_tokens": 512})
    assert (await post_chat(backend, {"messages": [{"role": "user", "content": "hi"}]})).status_code == 200
    assert "thinking" not in fake.to("/v1/messages")[0].json


async def test_an_unknown_reasoning_effort_is_refused():
    fake = FakeProvider().on("/v1/chat/completions", openai_stream({"content": "Hi"}))
    backend = backend_for(fake, "openai", "chat_completion", OPENAI)
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hi"}],
                                         "reasoning": {"effort": "extreme"}})
    assert response.status_code == 400 and "effort" in response.text
    assert not fake.received
