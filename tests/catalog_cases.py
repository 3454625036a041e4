"""What Elasticsearch documents for each service and task type, written out by hand so
that tests compare the catalog (and the CRD made from it) against it, not with itself."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

PLAIN_SECRET = "plain-secret-value-0123456789"
SECRET_SETTINGS = ("api_key", "access_key", "secret_key", "service_account_json", "entra_id", "client_secret")
# Settings that hold a map of secrets (the custom service's template parameters).
SECRET_MAPS = ("secret_parameters",)

_ALIBABA = {"api_key": PLAIN_SECRET, "service_id": "ops-text-embedding-001", "host": "h.example", "workspace": "default"}
_BEDROCK = {"access_key": PLAIN_SECRET, "secret_key": PLAIN_SECRET, "region": "us-east-1", "model": "m"}
_AZURE_STUDIO = {"api_key": PLAIN_SECRET, "target": "https://t.example/score"}
_AZURE_OPENAI = {"api_key": PLAIN_SECRET, "resource_name": "r", "deployment_id": "d", "api_version": "2024-02-01"}
_LOCAL = {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}
_VERTEX = {"service_account_json": PLAIN_SECRET, "project_id": "p"}
_KEY_MODEL = {"api_key": PLAIN_SECRET, "model_id": "m"}
_SAGEMAKER = {"access_key": PLAIN_SECRET, "secret_key": PLAIN_SECRET, "region": "us-east-1", "api": "elastic",
              "endpoint_name": "my-endpoint"}
_CUSTOM = {"secret_parameters": {"api_key": PLAIN_SECRET}, "url": "https://c.example/v1/op",
           "request": '{"input": ${input}}'}
_CUSTOM_PARSERS = {
    "completion": {"completion_result": "$.choices[*].message.content"},
    "rerank": {"relevance_score": "$.results[*].relevance_score"},
    "sparse_embedding": {"token_path": "$.result[*].embedding[*].token_id",
                         "weight_path": "$.result[*].embedding[*].weight"},
    "text_embedding": {"text_embeddings": "$.data[*].embedding[*]"},
}
_OPENSHIFT = {"api_key": PLAIN_SECRET, "url": "https://o.example/v1/op"}
_WATSONX = {
    "api_key": PLAIN_SECRET, "url": "https://us-south.ml.cloud.ibm.com", "api_version": "2024-05-02",
    "model_id": "ibm/slate-30m-english-rtrvr", "project_id": "p",
}

# (service, task type) -> the smallest service_settings Elasticsearch accepts.
MINIMAL: dict[tuple[str, str], dict[str, Any]] = {
    ("amazonbedrock", "chat_completion"): {**_BEDROCK, "provider": "amazontitan"},
    ("anthropic", "chat_completion"): {"api_key": PLAIN_SECRET, "model_id": "claude-sonnet-4-5"},
    ("azureopenai", "chat_completion"): _AZURE_OPENAI,
    ("hugging_face", "chat_completion"): {"api_key": PLAIN_SECRET, "url": "https://e.example/v1/chat/completions"},
    ("mistral", "chat_completion"): {"api_key": PLAIN_SECRET, "model": "mistral-small-latest"},
    ("openai", "chat_completion"): {"api_key": PLAIN_SECRET, "model_id": "gpt-4o"},
    ("openai", "embedding"): {"api_key": PLAIN_SECRET, "model_id": "text-embedding-3-small", "dimensions": 128},
    ("watsonxai", "chat_completion"): {
        "api_key": PLAIN_SECRET, "url": "https://us-south.ml.cloud.ibm.com", "api_version": "2024-05-02",
        "model_id": "ibm/granite-3-8b-instruct", "project_id": "p",
    },
    ("alibabacloud-ai-search", "completion"): _ALIBABA,
    ("alibabacloud-ai-search", "rerank"): _ALIBABA,
    ("alibabacloud-ai-search", "sparse_embedding"): _ALIBABA,
    ("alibabacloud-ai-search", "text_embedding"): _ALIBABA,
    ("amazonbedrock", "completion"): {**_BEDROCK, "provider": "anthropic"},
    ("amazonbedrock", "text_embedding"): {**_BEDROCK, "provider": "amazontitan"},
    ("anthropic", "completion"): {"api_key": PLAIN_SECRET, "model_id": "claude-3-5-haiku-latest"},
    ("azureaistudio", "completion"): {**_AZURE_STUDIO, "provider": "meta", "endpoint_type": "realtime"},
    ("azureaistudio", "text_embedding"): {**_AZURE_STUDIO, "provider": "openai", "endpoint_type": "token"},
    ("azureopenai", "completion"): _AZURE_OPENAI,
    ("azureopenai", "text_embedding"): _AZURE_OPENAI,
    ("cohere", "completion"): {"api_key": PLAIN_SECRET},
    ("cohere", "rerank"): {"api_key": PLAIN_SECRET},
    ("cohere", "text_embedding"): {"api_key": PLAIN_SECRET},
    ("elasticsearch", "embedding"): {**_LOCAL, "model_id": "openai/clip-vit-base-patch32"},
    ("elasticsearch", "rerank"): {**_LOCAL, "model_id": ".rerank-v1"},
    ("elasticsearch", "sparse_embedding"): {**_LOCAL, "model_id": ".elser_model_2"},
    ("elasticsearch", "text_embedding"): _LOCAL,
    ("elser", "sparse_embedding"): {"num_allocations": 1, "num_threads": 1},
    ("googleaistudio", "completion"): {"api_key": PLAIN_SECRET, "model_id": "gemini-1.5-flash"},
    ("googleaistudio", "text_embedding"): {"api_key": PLAIN_SECRET, "model_id": "text-embedding-004"},
    ("googlevertexai", "rerank"): _VERTEX,
    ("googlevertexai", "text_embedding"): {**_VERTEX, "location": "us-central1", "model_id": "text-embedding-004"},
    ("hugging_face", "text_embedding"): {"api_key": PLAIN_SECRET, "url": "https://e.example"},
    ("mistral", "text_embedding"): {"api_key": PLAIN_SECRET, "model": "mistral-embed"},
    ("openai", "completion"): {"api_key": PLAIN_SECRET, "model_id": "gpt-4o-mini"},
    ("openai", "text_embedding"): {"api_key": PLAIN_SECRET, "model_id": "text-embedding-3-small"},
    ("watsonxai", "text_embedding"): _WATSONX,
    ("watsonxai", "completion"): _WATSONX,
    ("watsonxai", "rerank"): _WATSONX,
    ("azureaistudio", "rerank"): {**_AZURE_STUDIO, "provider": "cohere", "endpoint_type": "token"},
    ("googlevertexai", "completion"): {**_VERTEX, "model_id": "gemini-2.5-flash"},
    ("googlevertexai", "chat_completion"): {**_VERTEX, "model_id": "gemini-2.5-flash"},
    ("hugging_face", "completion"): {"api_key": PLAIN_SECRET, "url": "https://e.example/v1/chat/completions"},
    ("hugging_face", "rerank"): {"api_key": PLAIN_SECRET, "url": "https://e.example/rerank"},
    ("mistral", "completion"): {"api_key": PLAIN_SECRET, "model": "mistral-small-latest"},
    ("ai21", "chat_completion"): _KEY_MODEL,
    ("ai21", "completion"): _KEY_MODEL,
    **{("amazon_sagemaker", t): _SAGEMAKER for t in ("chat_completion", "completion", "rerank", "sparse_embedding")},
    ("amazon_sagemaker", "text_embedding"): {**_SAGEMAKER, "element_type": "float"},
    ("contextualai", "rerank"): _KEY_MODEL,
    **{("custom", t): {**_CUSTOM, "response": {"json_parser": parser}} for t, parser in _CUSTOM_PARSERS.items()},
    ("deepseek", "chat_completion"): _KEY_MODEL,
    ("deepseek", "completion"): _KEY_MODEL,
    **{("fireworksai", t): _KEY_MODEL for t in ("chat_completion", "completion", "text_embedding")},
    ("groq", "chat_completion"): _KEY_MODEL,
    **{("jinaai", t): _KEY_MODEL for t in ("embedding", "rerank", "text_embedding")},
    **{("llama", t): {"url": "http://llama.example:8321/v1/openai/v1/chat/completions", "model_id": "llama3.2:3b"}
       for t in ("chat_completion", "completion")},
    ("llama", "text_embedding"): {"url": "http://llama.example:8321/v1/inference/embeddings",
                                  "model_id": "all-MiniLM-L6-v2"},
    **{("nvidia", t): _KEY_MODEL for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    **{("openshift_ai", t): _OPENSHIFT for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    ("voyageai", "rerank"): {"model_id": "rerank-2"},
    ("voyageai", "text_embedding"): {"model_id": "voyage-3-large"},
}

# Task settings some pairs cannot do without.
MINIMAL_TASK: dict[tuple[str, str], dict[str, Any]] = {
    ("anthropic", "completion"): {"max_tokens": 256},
    ("anthropic", "chat_completion"): {"max_tokens": 1024},
}

# (service, task type) -> settings whose absence Elasticsearch reports as
# "[service_settings] does not contain the required setting [X]".
REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("amazonbedrock", "chat_completion"): ("access_key", "secret_key", "region", "provider", "model"),
    ("anthropic", "chat_completion"): ("api_key", "model_id"),
    ("azureopenai", "chat_completion"): ("resource_name", "deployment_id", "api_version"),
    ("hugging_face", "chat_completion"): ("api_key", "url"),
    ("mistral", "chat_completion"): ("api_key", "model"),
    ("openai", "chat_completion"): ("model_id",),
    ("openai", "embedding"): ("model_id",),
    ("watsonxai", "chat_completion"): ("api_key", "url", "api_version", "model_id", "project_id"),
    **{("alibabacloud-ai-search", t): ("api_key", "service_id", "host", "workspace")
       for t in ("completion", "rerank", "sparse_embedding", "text_embedding")},
    ("amazonbedrock", "completion"): ("access_key", "secret_key", "region", "provider", "model"),
    ("amazonbedrock", "text_embedding"): ("access_key", "secret_key", "region", "provider", "model"),
    ("anthropic", "completion"): ("api_key", "model_id"),
    ("azureaistudio", "completion"): ("api_key", "target", "provider", "endpoint_type"),
    ("azureaistudio", "text_embedding"): ("api_key", "target", "provider", "endpoint_type"),
    ("azureopenai", "completion"): ("resource_name", "deployment_id", "api_version"),
    ("azureopenai", "text_embedding"): ("resource_name", "deployment_id", "api_version"),
    ("cohere", "completion"): ("api_key",),
    ("cohere", "rerank"): ("api_key",),
    ("cohere", "text_embedding"): ("api_key",),
    ("elasticsearch", "embedding"): ("model_id", "num_threads"),
    ("elasticsearch", "rerank"): ("model_id", "num_threads"),
    ("elasticsearch", "sparse_embedding"): ("model_id", "num_threads"),
    ("elasticsearch", "text_embedding"): ("model_id", "num_threads"),
    ("elser", "sparse_embedding"): ("num_threads",),
    ("googleaistudio", "completion"): ("api_key", "model_id"),
    ("googleaistudio", "text_embedding"): ("api_key", "model_id"),
    ("googlevertexai", "rerank"): ("service_account_json", "project_id"),
    ("googlevertexai", "text_embedding"): ("service_account_json", "model_id", "project_id"),
    ("hugging_face", "text_embedding"): ("api_key", "url"),
    ("mistral", "text_embedding"): ("api_key", "model"),
    ("openai", "completion"): ("model_id",),
    ("openai", "text_embedding"): ("model_id",),
    **{("watsonxai", t): ("api_key", "url", "api_version", "model_id", "project_id")
       for t in ("completion", "rerank", "text_embedding")},
    ("azureaistudio", "rerank"): ("api_key", "target", "provider", "endpoint_type"),
    # project_id and model_id are required only of the google provider (the default).
    ("googlevertexai", "completion"): ("service_account_json",),
    ("googlevertexai", "chat_completion"): ("service_account_json",),
    ("hugging_face", "completion"): ("api_key", "url"),
    ("hugging_face", "rerank"): ("api_key", "url"),
    ("mistral", "completion"): ("api_key", "model"),
    **{("ai21", t): ("api_key", "model_id") for t in ("chat_completion", "completion")},
    **{("amazon_sagemaker", t): ("access_key", "secret_key", "region", "api", "endpoint_name")
       for t in ("chat_completion", "completion", "rerank", "sparse_embedding", "text_embedding")},
    ("contextualai", "rerank"): ("api_key", "model_id"),
    **{("custom", t): ("secret_parameters", "url", "request", "response")
       for t in ("completion", "rerank", "sparse_embedding", "text_embedding")},
    **{("deepseek", t): ("api_key", "model_id") for t in ("chat_completion", "completion")},
    **{("fireworksai", t): ("api_key", "model_id") for t in ("chat_completion", "completion", "text_embedding")},
    ("groq", "chat_completion"): ("api_key", "model_id"),
    **{("jinaai", t): ("api_key", "model_id") for t in ("embedding", "rerank", "text_embedding")},
    **{("llama", t): ("url", "model_id") for t in ("chat_completion", "completion", "text_embedding")},
    **{("nvidia", t): ("api_key", "model_id") for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    **{("openshift_ai", t): ("api_key", "url") for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    **{("voyageai", t): ("model_id",) for t in ("rerank", "text_embedding")},
}

# Elasticsearch's default rate_limit.requests_per_minute; None: a model run in-process.
DEFAULT_RATE_LIMIT: dict[tuple[str, str], int | None] = {
    ("amazonbedrock", "chat_completion"): 240,
    ("anthropic", "chat_completion"): 50,
    ("azureopenai", "chat_completion"): 120,
    ("hugging_face", "chat_completion"): 3000,
    ("mistral", "chat_completion"): 240,
    ("openai", "chat_completion"): 500,
    ("openai", "embedding"): 3000,
    ("watsonxai", "chat_completion"): 120,
    **{("alibabacloud-ai-search", t): 1000 for t in ("completion", "rerank", "sparse_embedding", "text_embedding")},
    ("amazonbedrock", "completion"): 240,
    ("amazonbedrock", "text_embedding"): 240,
    ("anthropic", "completion"): 50,
    ("azureaistudio", "completion"): 240,
    ("azureaistudio", "text_embedding"): 240,
    ("azureopenai", "completion"): 120,
    ("azureopenai", "text_embedding"): 1440,
    ("cohere", "completion"): 10000,
    ("cohere", "rerank"): 10000,
    ("cohere", "text_embedding"): 10000,
    ("elasticsearch", "embedding"): None,
    ("elasticsearch", "rerank"): None,
    ("elasticsearch", "sparse_embedding"): None,
    ("elasticsearch", "text_embedding"): None,
    ("elser", "sparse_embedding"): None,
    ("googleaistudio", "completion"): 360,
    ("googleaistudio", "text_embedding"): 360,
    ("googlevertexai", "rerank"): 300,
    ("googlevertexai", "text_embedding"): 30000,
    ("hugging_face", "text_embedding"): 3000,
    ("mistral", "text_embedding"): 240,
    ("openai", "completion"): 500,
    ("openai", "text_embedding"): 3000,
    ("watsonxai", "text_embedding"): 120,
    ("watsonxai", "completion"): 120,
    ("watsonxai", "rerank"): 120,
    ("azureaistudio", "rerank"): 240,
    ("googlevertexai", "completion"): 1000,
    ("googlevertexai", "chat_completion"): 1000,
    ("hugging_face", "completion"): 3000,
    ("hugging_face", "rerank"): 3000,
    ("mistral", "completion"): 240,
    **{("ai21", t): 200 for t in ("chat_completion", "completion")},
    # Elasticsearch sets no rate limit of its own for SageMaker (the AWS SDK) and DeepSeek.
    **{("amazon_sagemaker", t): None
       for t in ("chat_completion", "completion", "rerank", "sparse_embedding", "text_embedding")},
    ("contextualai", "rerank"): 1000,
    **{("custom", t): 10000 for t in ("completion", "rerank", "sparse_embedding", "text_embedding")},
    **{("deepseek", t): None for t in ("chat_completion", "completion")},
    **{("fireworksai", t): 6000 for t in ("chat_completion", "completion", "text_embedding")},
    ("groq", "chat_completion"): 1000,
    **{("jinaai", t): 2000 for t in ("embedding", "rerank", "text_embedding")},
    **{("llama", t): 3000 for t in ("chat_completion", "completion", "text_embedding")},
    **{("nvidia", t): 3000 for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    **{("openshift_ai", t): 3000 for t in ("chat_completion", "completion", "rerank", "text_embedding")},
    **{("voyageai", t): 2000 for t in ("rerank", "text_embedding")},
}

# Services that call a provider although Elasticsearch gives them no default rate limit.
UNLIMITED_EXTERNAL = ("amazon_sagemaker", "deepseek")

PAIRS = sorted(MINIMAL)
EXTERNAL_PAIRS = [pair for pair in PAIRS if DEFAULT_RATE_LIMIT[pair] is not None or pair[0] in UNLIMITED_EXTERNAL]
ALL_TASK_TYPES = ("chat_completion", "completion", "embedding", "rerank", "sparse_embedding", "text_embedding")
SERVICES_BY_NAME = sorted({service for service, _ in PAIRS})


def es_body(service: str, task: str, **overrides: Any) -> dict[str, Any]:
    """Elasticsearch's create body with the minimal settings of the pair."""
    body: dict[str, Any] = {"service": service, "service_settings": copy.deepcopy(MINIMAL[(service, task)])}
    if (service, task) in MINIMAL_TASK:
        body["task_settings"] = copy.deepcopy(MINIMAL_TASK[(service, task)])
    body.update(overrides)
    return body


def secret_ref(name: str = "provider-credentials", key: str = "api-key") -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def manifest(service: str, task: str, name: str = "my-endpoint", **spec_overrides: Any) -> dict[str, Any]:
    """An InferenceEndpoint with the minimal settings of the pair, secrets as references."""
    settings = {
        k: (secret_ref(key=k.replace("_", "-")) if k in SECRET_SETTINGS else
            {name: secret_ref(key=name.replace("_", "-")) for name in v} if k in SECRET_MAPS else v)
        for k, v in copy.deepcopy(MINIMAL[(service, task)]).items()
    }
    spec: dict[str, Any] = {"taskType": task, "service": service, "serviceSettings": settings}
    if (service, task) in MINIMAL_TASK:
        spec["taskSettings"] = copy.deepcopy(MINIMAL_TASK[(service, task)])
    spec.update(spec_overrides)
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name}, "spec": spec}


# Every create request of Elasticsearch's specification (``put*/examples/request/``; the
# file names the commit): the bodies users copy from the documentation.
SPEC_CREATE_EXAMPLES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "es_create_examples.json").read_text())["examples"]
# The examples kubeinfer refuses still, and why.
REFUSED = {
    # An endpoint on another endpoint's model deployment (deployment_id, no model_id).
    "PutElasticsearchRequestExample6": "does not contain the required setting [model_id]",
}


def task_type_of(path_task: str) -> str:
    # One example's path says "chat-completion" for the task type its body and title mean.
    return path_task.replace("-", "_")


# (name, task type, inference id, body) of each example kubeinfer accepts.
SPEC_EXAMPLES = [
    (e["name"], task_type_of(e["task_type"]), e["inference_id"], e["body"])
    for e in SPEC_CREATE_EXAMPLES if e["name"] not in REFUSED
]
