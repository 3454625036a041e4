"""The unified chat completion API in front of a fake of OpenAI's chat completions:
the OpenAI body the provider received and the bytes the client got, byte for byte as
Elasticsearch writes them (tool calls and the usage chunk included)."""

from __future__ import annotations

import json

from fake_providers import FakeProvider, Reply, backend_for, post_chat
from model_server.api.sse import parse_events

KEY = "sk-test-0123456789abcdef"
PATH = "/v1/chat/completions"
BOM = "\ufeff"


def openai_chunk(delta=None, finish=None, usage=None, choices=True):
    chunk = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
             "system_fingerprint": "fp", "choices": []}
    if choices:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    if usage:
        chunk["usage"] = usage
    return (None, json.dumps(chunk))


TOOL_STREAM = [
    openai_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_current_price", "arguments": ""}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"item\":"}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"scarf\"}"}}]}),
    openai_chunk({}, finish="tool_calls"),
    openai_chunk(usage={"prompt_tokens": 16, "completion_tokens": 28, "total_tokens": 44}, choices=False),
    (None, "[DONE]"),
]

TOOLS_REQUEST = {
    "messages": [{"role": "user", "content": [{"type": "text", "text": "What's the price of a scarf?"}]}],
    "tools": [{"type": "function", "function": {
        "name": "get_current_price", "description": "Get the current price of a item",
        "parameters": {"type": "object", "properties": {"item": {"id": "123"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_current_price"}},
}


def openai_backend(fake, **settings):
    return backend_for(fake, "openai", "chat_completion",
                       {"api_key": KEY, "model_id": "gpt-4o", "url": "https://openai.test/v1", **settings},
                       {"user": "u-1"})


async def test_tool_calls_stream_as_elasticsearch_chunks_byte_for_byte():
    fake = FakeProvider().on(PATH, Reply(events=TOOL_STREAM))
    response = await post_chat(openai_backend(fake), TOOLS_REQUEST)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    head = '{"id":"chatcmpl-9","choices":['
    tail = '],"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}'
    assert response.text == "".join(BOM + f"event: message\ndata: {data}\n\n" for data in [
        head + '{"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","function":{"arguments":"",'
               '"name":"get_current_price"},"type":"function"}]},"index":0}' + tail,
        head + '{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"item\\":"},"type":null}]},"index":0}'
        + tail,
        head + '{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"scarf\\"}"},"type":null}]},"index":0}'
        + tail,
        head + '{"delta":{},"finish_reason":"tool_calls","index":0}' + tail,
        '{"id":"chatcmpl-9","choices":[],"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk",'
        '"usage":{"completion_tokens":28,"prompt_tokens":16,"total_tokens":44}}',
        "[DONE]",
    ])
    [received] = fake.to(PATH)
    assert received.host == "openai.test"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.json == {
        **TOOLS_REQUEST, "model": "gpt-4o", "n": 1, "stream": True, "stream_options": {"include_usage": True},
        "user": "u-1",
    }


async def test_assistant_tool_calls_and_tool_results_reach_openai_as_sent():
    fake = FakeProvider().on(PATH, Reply(events=[openai_chunk({"role": "assistant", "content": "Cold."}),
                                                 (None, "[DONE]")]))
    body = {
        "model": "gpt-4o-mini", "max_completion_tokens": 64, "stop": ["\n\n"], "temperature": 0.2, "top_p": 0.9,
        "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "Let's find out what the weather is", "tool_calls": [
                {"id": "call_K", "type": "function",
                 "function": {"name": "get_current_weather", "arguments": "{\"location\":\"Boston, MA\"}"}}]},
            {"role": "tool", "content": "The weather is cold", "tool_call_id": "call_K"},
        ],
    }
    response = await post_chat(openai_backend(fake), body)
    events = list(parse_events(response.text))
    assert events[0] == ("message", '{"id":"chatcmpl-9","choices":[{"delta":{"content":"Cold.","role":"assistant"},'
                                    '"index":0}],"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}')
    assert events[-1] == ("message", "[DONE]")
    sent = fake.to(PATH)[0].json
    assert sent["messages"] == body["messages"]
    assert (sent["model"], sent["max_completion_tokens"], sent["stop"], sent["temperature"], sent["top_p"],
            sent["tool_choice"]) == ("gpt-4o-mini", 64, ["\n\n"], 0.2, 0.9, "auto")


async def test_provider_error_is_a_unified_error_with_its_status():
    fake = FakeProvider().on(PATH, Reply(401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error",
                                                         "code": "invalid_api_key", "param": None}}))
    response = await post_chat(openai_backend(fake), {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    [(event, data)] = list(parse_events(response.text))
    assert event == "error"
    error = json.loads(data)["error"]
    assert error["code"] == "unauthorized" and error["type"] == "status_exception"
    assert KEY not in response.text and set(error) == {"code", "message", "type"}


async def test_unknown_field_and_missing_messages_are_parse_errors():
    fake = FakeProvider()
    response = await post_chat(openai_backend(fake), {"messages": [{"role": "user", "content": "hi"}], "foo": 1})
    assert response.status_code == 400
    assert json.loads(list(parse_events(response.text))[0][1]) == {"error": {
        "code": "bad_request", "message": "[chat_completion_request] unknown field [foo]",
        "type": "x_content_parse_exception"}}
    response = await post_chat(openai_backend(fake), {"model": "gpt-4o"})
    assert json.loads(list(parse_events(response.text))[0][1])["error"]["message"] == "Required [messages]"
    assert fake.received == []


async def test_chat_completion_endpoint_refuses_plain_inference_as_elasticsearch_does():
    fake = FakeProvider()
    backend = openai_backend(fake)
    response = await post_chat(backend, {"input": "hi"}, path="/_inference/chat_completion/ep")
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == (
        "Inference entity [ep] does not support task type [chat_completion] for inference, the task type must be "
        "one of [text_embedding, completion]. The task type for the inference entity is chat_completion, please "
        "use the _inference/chat_completion/ep/_stream URL.")
    assert fake.received == []


async def test_other_task_types_are_refused_by_the_unified_api():
    fake = FakeProvider()
    backend = backend_for(fake, "openai", "completion", {"api_key": KEY, "model_id": "gpt-4o"})
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    assert json.loads(list(parse_events(response.text))[0][1])["error"]["message"] == (
        "Incompatible task_type, the requested type [chat_completion] does not match the model type [completion]")
