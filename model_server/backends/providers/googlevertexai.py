"""Google Vertex AI: text embeddings through the model's ``predict`` method and
reranking through the Discovery Engine ranking API, with an OAuth2 token minted from the
service account key.

The token: a JWT signed with the key by google-auth's signer, exchanged at the key's own
``token_uri`` (RFC 7523 JWT bearer grant) on the shared async client, cached and refreshed
before expiry. ``url`` replaces the API host
(``https://<location>-aiplatform.googleapis.com`` or ``https://discoveryengine.googleapis.com``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from google.auth import crypt, jwt

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import status_exception
from ..results import InferenceResult, Ranking, TextEmbeddings
from ..base import InferenceRequest
from .answers import expect_count, float_vector, rerank_results, text_embeddings
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


def parse_token(response: Any) -> tuple[str, float]:
    answer = response.json()
    return str(answer["access_token"]), float(answer.get("expires_in", TOKEN_LIFETIME))


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

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        project = self.setting("project_id")
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            location = self.setting("location")
            base = self.base_url(f"https://{location}-aiplatform.googleapis.com")
            url = (f"{base}/v1/projects/{project}/locations/{location}/publishers/google/models/"
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
