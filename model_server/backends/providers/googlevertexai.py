"""Google Vertex AI: text embeddings through the model's ``predict`` method and
reranking through the Discovery Engine ranking API, with an OAuth2 token minted from the
service account key.

The token: a JWT signed with the key by google-auth's signer, exchanged at the key's own
``token_uri`` (RFC 7523 JWT bearer grant) on the shared async client, cached and refreshed
before expiry. ``url`` replaces the API host
(``https://<location>-aiplatform.googleapis.com`` or ``https://discoveryengine.googleapis.com``).

Completion with the ``google`` provider posts Gemini's ``generateContent`` (streamed:
``streamGenerateContent?alt=sse``) at the regional host, or the global one without a
``location``. With a Model Garden provider it posts to the endpoint's own ``url``
(``streaming_url`` for streams): Anthropic's messages body (``anthropic_version``
``vertex-2023-10-16``, ``max_tokens`` 1024 unless set) for ``anthropic``, OpenAI's chat
body for the others (Meta, Hugging Face, Mistral, AI21).

Chat completion streams the same ways: Gemini's ``streamGenerateContent`` with the
unified request as Gemini contents (``functionCall``/``functionResponse`` parts,
``functionDeclarations``, ``toolConfig``), its candidates read back as unified chunks;
Anthropic on Vertex through the anthropic module's translation; the others as OpenAI chat.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

from google.auth import crypt, jwt

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import status_exception
from ..results import CompletionDelta, InferenceResult, Ranking, TextEmbeddings
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest, ChoiceDelta, Message, ToolCallDelta, tool_arguments, usage
from .anthropic import MessageStreamReader, messages_body
from . import openai_shapes
from .answers import completions, delta, expect_count, float_vector, rerank_results, text_embeddings
from .streams import server_sent_events
from .tokens import TokenExchangeBackend

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
# Elasticsearch's input types as Vertex AI's task types.
TASK_TYPES = {"ingest": "RETRIEVAL_DOCUMENT", "search": "RETRIEVAL_QUERY",
              "classification": "CLASSIFICATION", "clustering": "CLUSTERING"}


def parse_predictions(answer: dict[str, Any], count: int) -> TextEmbeddings:
    predictions = expect_count(answer["predictions"], count, "predictions")
    return text_embeddings([float_vector(p["embeddings"]["values"]) for p in predictions])


def parse_ranking(answer: dict[str, Any], count: int, top_n: int | None) -> Ranking:
    scored = []
    for record in answer.get("records", []):
        index = int(record["id"])
        if not 0 <= index < count:
            raise ValueError(f"record id [{index}] is out of range")
        scored.append((index, record["score"], record.get("content")))
    return rerank_results(scored, top_n)


ANTHROPIC_VERSION = "vertex-2023-10-16"


def gemini_texts(answer: dict[str, Any]) -> str:
    """The text of a ``generateContent`` answer (or of one streamed chunk of it)."""
    candidates = answer.get("candidates") or []
    parts = ((candidates[0].get("content") or {}).get("parts") or []) if candidates else []
    return "".join(part.get("text", "") for part in parts if not part.get("thought"))


def parse_gemini(answer: dict[str, Any]) -> InferenceResult:
    if not answer["candidates"]:
        raise ValueError("[candidates] is empty")
    return completions([gemini_texts(answer)])


def parse_anthropic(answer: dict[str, Any]) -> InferenceResult:
    texts = [block["text"] for block in answer["content"] if block.get("type") == "text"]
    if not texts:
        raise ValueError("[content] holds no text")
    return completions(["".join(texts)])


def parse_token(response: Any) -> tuple[str, float]:
    answer = response.json()
    return str(answer["access_token"]), float(answer.get("expires_in", TOKEN_LIFETIME))


GEMINI_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
                 "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter"}
GEMINI_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def _gemini_parts(message: Message) -> list[dict[str, Any]]:
    if isinstance(message.content, list):
        return [{"text": part.text} for part in message.content]
    return [{"text": message.content}] if message.content else []


def gemini_chat_body(request: ChatRequest, task_settings: dict[str, Any]) -> dict[str, Any]:
    """Gemini's ``generateContent`` request for a unified chat request."""
    names: dict[str, str] = {}  # tool call id -> function name, for the answers that quote it
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system.extend(_gemini_parts(message))
        elif message.role == "tool":
            name = names.get(message.tool_call_id or "", message.tool_call_id or "")
            contents.append({"role": "user", "parts": [
                {"functionResponse": {"name": name, "response": {"content": message.text}}}]})
        elif message.role == "assistant":
            parts = _gemini_parts(message)
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                args = tool_arguments(call)
                parts.append({"functionCall": {"name": call.function.name,
                                               "args": args if isinstance(args, dict) else {"value": args}}})
            contents.append({"role": "model", "parts": parts})
        else:
            contents.append({"role": "user", "parts": _gemini_parts(message)})
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    for key, value in (("maxOutputTokens", request.max_completion_tokens), ("temperature", request.temperature),
                       ("topP", request.top_p), ("stopSequences", list(request.stop) if request.stop else None)):
        if value is not None:
            config[key] = value
    thinking = task_settings.get("thinking_config") or {}
    if thinking.get("thinking_budget") is not None:
        config["thinkingConfig"] = {"thinkingBudget": thinking["thinking_budget"]}
    if config:
        body["generationConfig"] = config
    if request.tools:
        body["tools"] = [{"functionDeclarations": [
            {"name": t.function.name, **({"description": t.function.description} if t.function.description else {}),
             **({"parameters": t.function.parameters} if t.function.parameters else {})}
            for t in request.tools]}]
    if request.tool_choice is not None:
        choice = request.tool_choice_json()
        if isinstance(choice, str):
            body["toolConfig"] = {"functionCallingConfig": {"mode": GEMINI_TOOL_MODES[choice]}}
        else:
            body["toolConfig"] = {"functionCallingConfig": {
                "mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}}
    return body


class GeminiStreamReader:
    """Gemini's streamed ``GenerateContentResponse`` objects into unified chunks."""

    def __init__(self, model: str) -> None:
        self.id, self.model = "", model
        self.calls = 0
        self.usage: dict[str, Any] = {}

    def read(self, answer: dict[str, Any]) -> list[ChatCompletionChunk]:
        self.id = str(answer.get("responseId") or self.id)
        self.model = str(answer.get("modelVersion") or self.model)
        self.usage = answer.get("usageMetadata") or self.usage
        out = []
        for candidate in answer.get("candidates") or ():
            index = int(candidate.get("index", 0))
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    call = part["functionCall"]
                    out.append(self._chunk(ChoiceDelta(role="assistant", index=index, tool_calls=(ToolCallDelta(
                        index=self.calls, id=call.get("id") or f"call_{self.calls}", name=call.get("name"),
                        arguments=json.dumps(call.get("args") or {}, separators=(",", ":")), type="function"),))))
                    self.calls += 1
                elif part.get("text") and not part.get("thought"):
                    out.append(self._chunk(ChoiceDelta(role="assistant", content=part["text"], index=index)))
            reason = candidate.get("finishReason")
            if reason:
                finish = "tool_calls" if self.calls and reason == "STOP" else GEMINI_FINISH.get(reason, reason.lower())
                out.append(self._chunk(ChoiceDelta(finish_reason=finish, index=index)))
        return out

    def _chunk(self, choice: ChoiceDelta) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, model=self.model, choices=(choice,))

    def last(self) -> ChatCompletionChunk:
        """The usage chunk that ends the stream."""
        prompt = int(self.usage.get("promptTokenCount", 0))
        completion = int(self.usage.get("candidatesTokenCount", 0)) + int(self.usage.get("thoughtsTokenCount", 0))
        return ChatCompletionChunk(id=self.id, model=self.model, choices=(), usage=usage(prompt, completion))


class GoogleVertexAIBackend(TokenExchangeBackend):
    def __init__(self, config: InferenceEndpointConfig, **options: Any) -> None:
        super().__init__(config, **options)
        try:
            info = json.loads(self.secret("service_account_json"))
            self._signer = crypt.RSASigner.from_service_account_info(info)
            self._client_email = info["client_email"]
        except (ValueError, KeyError, TypeError):
            # Never quote the key: say only what is wrong with it.
            raise status_exception(
                "[service_settings] [service_account_json] is not a valid service account key", 400
            ) from None
        self._token_uri = info.get("token_uri") or GOOGLE_TOKEN_URI

    async def _exchange(self) -> tuple[str, float]:
        now = int(time.time())
        claims = {"iss": self._client_email, "scope": SCOPE, "aud": self._token_uri,
                  "iat": now, "exp": now + TOKEN_LIFETIME}
        assertion = jwt.encode(self._signer, claims)
        return await self.post_token_form(
            self._token_uri, {"grant_type": JWT_GRANT, "assertion": assertion.decode()}, parse_token
        )

    # ---- completion -------------------------------------------------------------------
    @property
    def model_garden(self) -> str | None:
        provider = self.setting("provider")
        return provider if provider not in (None, "google") else None

    def gemini_url(self, stream: bool) -> str:
        location = self.setting("location")
        host = f"https://{location}-aiplatform.googleapis.com" if location else "https://aiplatform.googleapis.com"
        base = host if self.model_garden else self.base_url(host)
        operation = "streamGenerateContent" if stream else "generateContent"
        return (f"{base}/v1/projects/{self.setting('project_id')}/locations/{location or 'global'}"
                f"/publishers/google/models/{self.setting('model_id')}:{operation}")

    def completion_request(self, request: InferenceRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        settings = request.task_settings
        provider = self.model_garden
        if provider is None:
            body: dict[str, Any] = {
                "contents": [{"role": "user", "parts": [{"text": text}]} for text in request.input],
            }
            thinking = settings.get("thinking_config") or {}
            if thinking.get("thinking_budget") is not None:
                body["generationConfig"] = {"thinkingConfig": {"thinkingBudget": thinking["thinking_budget"]}}
            return self.gemini_url(stream), body
        url = (self.setting("streaming_url") or self.setting("url")) if stream else (
            self.setting("url") or self.setting("streaming_url"))
        if provider == "anthropic":
            body = {
                "anthropic_version": ANTHROPIC_VERSION,
                "messages": [{"role": "user", "content": text} for text in request.input],
                "max_tokens": settings.get("max_tokens") or 1024,
            }
            if stream:
                body["stream"] = True
            return url, body
        return url, openai_shapes.chat_body(request.input, stream=stream, model=self.setting("model_id"))

    async def _complete(self, request: InferenceRequest) -> InferenceResult:
        url, body = self.completion_request(request, stream=False)
        answer = await self.call_json(url, body, request)
        provider = self.model_garden
        parse = parse_gemini if provider is None else parse_anthropic if provider == "anthropic" else \
            openai_shapes.parse_chat
        return self.translate(parse, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        url, body = self.completion_request(request, stream=True)
        provider = self.model_garden
        params = {"alt": "sse"} if provider is None else None
        async with self.open_stream(url, body, request, params=params) as response:
            if provider not in (None, "anthropic"):
                async for chunk in openai_shapes.chat_deltas(response):
                    yield chunk
                return
            async for _event, data in server_sent_events(response):
                if data.strip() == "[DONE]":
                    return
                event = strict_json.loads(data)
                if provider is None:
                    text = gemini_texts(event)
                else:
                    if event.get("type") == "message_stop":
                        return
                    text = (event.get("delta") or {}).get("text") if event.get("type") == "content_block_delta" \
                        else None
                if text:
                    yield delta(text)

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        provider = self.model_garden
        settings = self.config.task_settings.model_dump()
        if provider is None:
            body = gemini_chat_body(request, settings)
            async with self.open_stream(self.gemini_url(True), body, request, params={"alt": "sse"}) as response:
                reader = GeminiStreamReader(self.setting("model_id"))
                async for _event, data in server_sent_events(response):
                    for chunk in reader.read(strict_json.loads(data)):
                        yield chunk
                yield reader.last()
            return
        url = self.setting("streaming_url") or self.setting("url")
        if provider == "anthropic":
            body = messages_body(request, "", {**settings, "max_tokens": settings.get("max_tokens") or 1024})
            del body["model"]  # the URL names the model
            body = {"anthropic_version": ANTHROPIC_VERSION, **body}
            async with self.open_stream(url, body, request) as response:
                reader = MessageStreamReader()
                async for event, data in server_sent_events(response):
                    for chunk in reader.read(event, strict_json.loads(data) if data.strip().startswith("{") else {}):
                        yield chunk
                    if event == "message_stop":
                        return
            return
        body = openai_shapes.unified_chat_body(request, model=self.setting("model_id"))
        async with self.open_stream(url, body, request) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        if self.config.task_type == TaskType.COMPLETION:
            return await self._complete(request)
        project = self.setting("project_id")
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            location = self.setting("location")
            host = f"https://{location}-aiplatform.googleapis.com" if location else "https://aiplatform.googleapis.com"
            base = self.base_url(host)
            url = (f"{base}/v1/projects/{project}/locations/{location or 'global'}/publishers/google/models/"
                   f"{self.setting('model_id')}:predict")
            task_type = TASK_TYPES.get(self.input_type(request) or "")
            instances = []
            for text in request.input:
                instance = {"content": text}
                if task_type:
                    instance["task_type"] = task_type
                instances.append(instance)
            body: dict[str, Any] = {"instances": instances}
            parameters: dict[str, Any] = {}
            if request.task_settings.get("auto_truncate") is not None:
                parameters["autoTruncate"] = request.task_settings["auto_truncate"]
            if self.setting("dimensions"):
                parameters["outputDimensionality"] = self.setting("dimensions")
            if parameters:
                body["parameters"] = parameters
            answer = await self.call_json(url, body, request)
            return self.translate(parse_predictions, answer, len(request.input))
        base = self.base_url("https://discoveryengine.googleapis.com")
        url = f"{base}/v1/projects/{project}/locations/global/rankingConfigs/default_ranking_config:rank"
        top_n = request.task_settings.get("top_n")
        body = {
            "model": self.setting("model_id"),
            "query": request.query or "",
            "records": [{"id": str(i), "content": text} for i, text in enumerate(request.input)],
        }
        if top_n:
            body["topN"] = top_n
        answer = await self.call_json(url, body, request)
        return self.translate(parse_ranking, answer, len(request.input), top_n)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> GoogleVertexAIBackend:
    return GoogleVertexAIBackend(config, **options)
