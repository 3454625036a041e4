"""The unified chat completion API in front of fakes of Anthropic (messages stream),
Amazon Bedrock (ConverseStream, AWS's binary event stream) and the OpenAI-compatible
services (Azure OpenAI, Mistral, Hugging Face, watsonx.ai): what each provider received,
and the unified chunks the client got, tool calls included."""

from __future__ import annotations

import json

from fake_providers import FakeProvider, Reply, aws_event, backend_for, post_chat
from model_server.api.sse import parse_events

KEY = "sk-test-0123456789abcdef"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_current_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}
CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Boston?"}]},
        {"role": "assistant", "content": "Let's find out what the weather is", "tool_calls": [
            {"id": "call_K", "type": "function",
             "function": {"name": "get_current_weather", "arguments": "{\"location\":\"Boston, MA\"}"}}]},
        {"role": "tool", "content": "The weather is cold", "tool_call_id": "call_K"},
        {"role": "user", "content": "And in Paris?"},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": "required",
    "max_completion_tokens": 100,
    "stop": ["END"],
    "temperature": 0.5,
}


def chunks(response) -> list:
    assert response.status_code == 200, response.text
    events = list(parse_events(response.text))
    assert events[-1] == ("message", "[DONE]")
    assert all(event == "message" for event, _ in events)
    return [json.loads(data) for _, data in events[:-1]]


def deltas(received: list) -> list:
    return [c["choices"][0]["delta"] for c in received if c.get("choices")]


# ---- Anthropic --------------------------------------------------------------------------

def anthropic_events(*events):
    return [(name, json.dumps({"type": name, **data})) for name, data in events]


ANTHROPIC_TOOL_STREAM = anthropic_events(
    ("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                                   "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {}),
    ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
    ("content_block_stop", {"index": 0}),
    ("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                            "name": "get_current_weather", "input": {}}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}}),
    ("content_block_stop", {"index": 1}),
    ("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 40}}),
    ("message_stop", {}),
)


async def test_anthropic_tool_use_streams_as_unified_tool_calls():
    fake = FakeProvider().on("/v1/messages", Reply(events=ANTHROPIC_TOOL_STREAM))
    backend = backend_for(fake, "anthropic", "chat_completion",
                          {"api_key": KEY, "model_id": "claude-sonnet-4-5", "url": "https://anthropic.test"},
                          {"max_tokens": 1024, "top_k": 5})
    got = chunks(await post_chat(backend, CONVERSATION))
    assert {c["id"] for c in got} == {"msg_1"} and {c["model"] for c in got} == {"claude-sonnet-4-5"}
    assert deltas(got) == [
        {"content": "", "role": "assistant"},
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "toolu_1", "function": {"arguments": "", "name": "get_current_weather"},
                         "type": "function"}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}, "type": None}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}, "type": None}]},
        {},
    ]
    assert got[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert got[-1] == {"id": "msg_1", "choices": [], "model": "claude-sonnet-4-5", "object": "chat.completion.chunk",
                       "usage": {"completion_tokens": 40, "prompt_tokens": 25, "total_tokens": 65}}
    [received] = fake.to("/v1/messages")
    assert received.headers["x-api-key"] == KEY and received.headers["anthropic-version"] == "2023-06-01"
    assert received.json == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Boston?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let's find out what the weather is"},
                {"type": "tool_use", "id": "call_K", "name": "get_current_weather", "input": {"location": "Boston, MA"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_K",
                                          "content": "The weather is cold"}]},
            {"role": "user", "content": "And in Paris?"},
        ],
        "max_tokens": 100, "temperature": 0.5, "top_k": 5, "stop_sequences": ["END"],
        "tools": [{"name": "get_current_weather", "description": "Weather of a city",
                   "input_schema": WEATHER_TOOL["function"]["parameters"]}],
        "tool_choice": {"type": "any"},
        "stream": True,
    }


async def test_anthropic_stream_error_is_a_unified_error_event():
    events = ANTHROPIC_TOOL_STREAM[:4] + [("error", json.dumps({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}))]
    fake = FakeProvider().on("/v1/messages", Reply(events=events))
    backend = backend_for(fake, "anthropic", "chat_completion",
                          {"api_key": KEY, "model_id": "claude-sonnet-4-5", "url": "https://anthropic.test"},
                          {"max_tokens": 10})
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hi"}]})
    events = list(parse_events(response.text))
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1]) == {"error": {
        "code": "bad_gateway", "message": "The provider's stream failed: Overloaded", "type": "status_exception"}}
    assert fake.to("/v1/messages")[0].json["max_tokens"] == 10


# ---- Amazon Bedrock ConverseStream ---------------------------------------------------------

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BEDROCK_PATH = f"/model/{BEDROCK_MODEL}/converse-stream"


async def test_bedrock_converse_stream_tool_use_streams_as_unified_tool_calls():
    stream = b"".join([
        aws_event("messageStart", {"role": "assistant"}),
        aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
        aws_event("contentBlockStop", {"contentBlockIndex": 0}),
        aws_event("contentBlockStart", {"contentBlockIndex": 1, "start": {
            "toolUse": {"toolUseId": "tooluse_1", "name": "get_current_weather"}}}),
        aws_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"location\":"}}}),
        aws_event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        aws_event("contentBlockStop", {"contentBlockIndex": 1}),
        aws_event("messageStop", {"stopReason": "tool_use"}),
        aws_event("metadata", {"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
                               "metrics": {"latencyMs": 100}}),
    ])
    fake = FakeProvider().on(BEDROCK_PATH, Reply(raw=stream, content_type="application/vnd.amazon.eventstream",
                                                 headers={"x-amzn-requestid": "req-1"}))
    backend = backend_for(fake, "amazonbedrock", "chat_completion", {
        "access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "region": "us-east-1", "provider": "anthropic", "model": BEDROCK_MODEL}, {"top_k": 0.5})
    got = chunks(await post_chat(backend, CONVERSATION))
    assert {c["id"] for c in got} == {"req-1"} and {c["model"] for c in got} == {BEDROCK_MODEL}
    assert deltas(got) == [
        {"content": "", "role": "assistant"},
        {"content": "Let me check."},
        {"tool_calls": [{"index": 0, "id": "tooluse_1",
                         "function": {"arguments": "", "name": "get_current_weather"}, "type": "function"}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}, "type": None}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}, "type": None}]},
        {},
    ]
    assert got[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert got[-1]["usage"] == {"completion_tokens": 12, "prompt_tokens": 30, "total_tokens": 42}
    [received] = fake.to(BEDROCK_PATH)
    assert received.host == "bedrock-runtime.us-east-1.amazonaws.com"
    assert received.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert received.json == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Boston?"}]},
            {"role": "assistant", "content": [
                {"text": "Let's find out what the weather is"},
                {"toolUse": {"toolUseId": "call_K", "name": "get_current_weather", "input": {"location": "Boston, MA"}}},
            ]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "call_K",
                                                         "content": [{"text": "The weather is cold"}]}}]},
            {"role": "user", "content": [{"text": "And in Paris?"}]},
        ],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 0.5},
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "get_current_weather", "description": "Weather of a city",
                                    "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}],
            "toolChoice": {"any": {}},
        },
    }


# ---- OpenAI-compatible services -------------------------------------------------------------

def openai_stream(model="m"):
    def chunk(delta, finish=None, usage=None, choices=True):
        body = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": model}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
        if usage:
            body["usage"] = usage
        return (None, json.dumps(body))
    return [chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop"),
            chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}, choices=False),
            (None, "[DONE]")]


SIMPLE = {"messages": [{"role": "user", "content": "hello"}], "max_completion_tokens": 8}


async def test_azure_openai_chat_goes_to_the_deployment_with_its_key():
    path = "/openai/deployments/gpt-4o/chat/completions"
    fake = FakeProvider().on(path, Reply(events=openai_stream()))
    backend = backend_for(fake, "azureopenai", "chat_completion", {
        "api_key": KEY, "resource_name": "res", "deployment_id": "gpt-4o", "api_version": "2024-02-01"})
    got = chunks(await post_chat(backend, SIMPLE))
    assert deltas(got)[0] == {"content": "Hi", "role": "assistant"}
    assert got[-1]["usage"]["total_tokens"] == 4
    [received] = fake.to(path)
    assert received.host == "res.openai.azure.com" and received.query == {"api-version": "2024-02-01"}
    assert received.headers["api-key"] == KEY
    assert received.json == {"messages": SIMPLE["messages"], "max_completion_tokens": 8, "n": 1, "stream": True,
                             "stream_options": {"include_usage": True}}


async def test_mistral_chat_sends_max_tokens_and_its_model():
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=openai_stream("mistral-small-latest")))
    backend = backend_for(fake, "mistral", "chat_completion", {"api_key": KEY, "model": "mistral-small-latest"})
    got = chunks(await post_chat(backend, SIMPLE))
    assert got[0]["model"] == "mistral-small-latest"
    [received] = fake.to("/v1/chat/completions")
    assert received.host == "api.mistral.ai" and received.headers["authorization"] == f"Bearer {KEY}"
    assert received.json == {"messages": SIMPLE["messages"], "model": "mistral-small-latest", "max_tokens": 8,
                             "n": 1, "stream": True}


async def test_hugging_face_chat_posts_to_the_endpoint_url():
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=openai_stream("tgi")))
    backend = backend_for(fake, "hugging_face", "chat_completion", {
        "api_key": KEY, "url": "https://e.hf.test/v1/chat/completions", "model_id": "tgi"})
    got = chunks(await post_chat(backend, SIMPLE))
    assert deltas(got)[0]["content"] == "Hi"
    [received] = fake.to("/v1/chat/completions")
    assert received.host == "e.hf.test" and received.headers["authorization"] == f"Bearer {KEY}"
    assert received.json["model"] == "tgi" and received.json["max_tokens"] == 8


async def test_watsonx_chat_streams_from_chat_stream_with_an_iam_token():
    fake = FakeProvider()
    fake.on("/identity/token", Reply(json={"access_token": "iam-token", "expires_in": 3600}))
    stream = [(None, json.dumps({"id": "chat-1", "model_id": "ibm/granite-3-8b-instruct", "created": 1,
                                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                              "finish_reason": None}]})),
              (None, json.dumps({"id": "chat-1", "model_id": "ibm/granite-3-8b-instruct", "created": 1,
                                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}))]
    fake.on("/ml/v1/text/chat_stream", Reply(events=stream))
    backend = backend_for(fake, "watsonxai", "chat_completion", {
        "api_key": KEY, "url": "https://us-south.ml.test", "api_version": "2024-05-02",
        "model_id": "ibm/granite-3-8b-instruct", "project_id": "p-1"},
        iam_url="https://iam.test/identity/token")
    got = chunks(await post_chat(backend, SIMPLE))
    assert got[0] == {"id": "chat-1", "choices": [{"delta": {"content": "Hi", "role": "assistant"}, "index": 0}],
                      "model": "ibm/granite-3-8b-instruct", "object": "chat.completion.chunk"}
    assert got[-1]["usage"] == {"completion_tokens": 1, "prompt_tokens": 3, "total_tokens": 4}
    [received] = fake.to("/ml/v1/text/chat_stream")
    assert received.query == {"version": "2024-05-02"}
    assert received.headers["authorization"] == "Bearer iam-token"
    assert received.json == {"messages": SIMPLE["messages"], "max_tokens": 8, "model_id": "ibm/granite-3-8b-instruct",
                             "project_id": "p-1"}
