"""Azure OpenAI: a deployment's ``embeddings`` and ``chat/completions`` at
``https://<resource_name>.openai.azure.com/openai/deployments/<deployment_id>/...?api-version=``,
authenticated by ``api-key``, by a Microsoft Entra ID bearer token, or by a token that
Entra ID issues for the endpoint's client credentials (``tenant_id``, ``client_id``,
``client_secret``, ``scopes``) at ``https://login.microsoftonline.com/<tenant_id>/oauth2/v2.0/token``.

``url`` replaces ``https://<resource_name>.openai.azure.com``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator
from urllib.parse import quote

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, InferenceResult
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .oauth2 import ClientCredentialsGrant
from .openai_shapes import with_custom_headers
from .proxy import ProviderBackend

ENTRA_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"

class AzureOpenAIBackend(ProviderBackend):
    default_similarity = "dot_product"

    def operation_url(self) -> str:
        base = self.base_url(f"https://{self.setting('resource_name')}.openai.azure.com")
        return f"{base}/openai/deployments/{self.setting('deployment_id')}/{openai_shapes.OPERATIONS[self.config.task_type]}"

    def params(self) -> dict[str, str]:
        return {"api-version": self.setting("api_version")}

    def credentials(self) -> dict[str, str]:
        if self.setting("api_key") is not None:
            return {"api-key": self.secret("api_key")}
        return {"Authorization": f"Bearer {self.secret('entra_id')}"}

    def headers(self, task_settings: dict[str, Any] | None = None) -> dict[str, str]:
        # The user's own headers (task settings) first: the credentials are not theirs to replace.
        return with_custom_headers(self.credentials(), task_settings)

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        user = request.task_settings.get("user")
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            body = openai_shapes.embeddings_body(request.input, dimensions=self.setting("dimensions"), user=user)
            answer = await self.call_json(
                self.operation_url(), body, request, headers=self.headers(request.task_settings), params=self.params()
            )
            return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))
        body = openai_shapes.chat_body(request.input, n=1, user=user)
        answer = await self.call_json(
            self.operation_url(), body, request, headers=self.headers(request.task_settings), params=self.params()
        )
        return self.translate(openai_shapes.parse_chat, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = openai_shapes.chat_body(request.input, stream=True, n=1, user=request.task_settings.get("user"))
        async with self.open_stream(
            self.operation_url(), body, request, headers=self.headers(request.task_settings), params=self.params()
        ) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk


    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        # The deployment names the model; a request's own ``model`` is passed on as given.
        body = openai_shapes.unified_chat_body(
            request, model=None, user=self.config.task_settings.model_dump().get("user"),
            reasoning_effort=openai_shapes.reasoning_effort(request),
        )
        async with self.open_stream(
            self.operation_url(), body, request, headers=self.headers(self.config.task_settings.model_dump()), params=self.params()
        ) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk


class AzureOpenAIClientCredentialsBackend(ClientCredentialsGrant, AzureOpenAIBackend):
    """Azure OpenAI authorized by a Microsoft Entra ID token for the endpoint's client credentials."""

    # Microsoft's token endpoint takes the client's credentials in the form.
    client_authentication = "body"

    def token_url(self) -> str:
        return ENTRA_TOKEN_URL.format(tenant=quote(self.setting("tenant_id"), safe=""))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AzureOpenAIBackend:
    if getattr(config.service_settings, "client_secret", None) is not None:
        return AzureOpenAIClientCredentialsBackend(config, **options)
    return AzureOpenAIBackend(config, **options)
