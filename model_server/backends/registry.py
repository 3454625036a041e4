"""Which code serves which service: the one map from a catalog service to its backend.

The catalog describes services and names no backend; this module is the other half of
that contract, and a test checks that every service of the catalog has an entry here.
Provider modules are cheap to import (no torch); the local-model package defers torch
until a model is loaded.
"""

from __future__ import annotations

from typing import Any, Callable

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.config import ServerSettings
from kubeinfer.errors import status_exception

from . import local
from .base import Backend
from .url_policy import check_urls
from .providers import (
    alibabacloud_ai_search, amazon_sagemaker, amazonbedrock, anthropic, azureaistudio, azureopenai, cohere,
    contextualai, custom, googleaistudio, googlevertexai, hugging_face, jinaai, mistral, openai, openai_compatible,
    voyageai, watsonxai,
)

BackendFactory = Callable[..., Backend]

BACKENDS: dict[str, BackendFactory] = {
    "elasticsearch": local.create_backend,
    "elser": local.create_backend,
    "alibabacloud-ai-search": alibabacloud_ai_search.create_backend,
    "amazonbedrock": amazonbedrock.create_backend,
    "anthropic": anthropic.create_backend,
    "azureaistudio": azureaistudio.create_backend,
    "azureopenai": azureopenai.create_backend,
    "cohere": cohere.create_backend,
    "googleaistudio": googleaistudio.create_backend,
    "googlevertexai": googlevertexai.create_backend,
    "hugging_face": hugging_face.create_backend,
    "mistral": mistral.create_backend,
    "openai": openai.create_backend,
    "watsonxai": watsonxai.create_backend,
    "amazon_sagemaker": amazon_sagemaker.create_backend,
    "contextualai": contextualai.create_backend,
    "custom": custom.create_backend,
    "jinaai": jinaai.create_backend,
    "voyageai": voyageai.create_backend,
    # The services whose API is OpenAI's share one backend.
    **{name: openai_compatible.create_backend for name in openai_compatible.PROVIDERS},
}


def create_backend(config: InferenceEndpointConfig, **options: Any) -> Backend:
    """Build the backend that serves ``config`` (secrets must already be resolved)."""
    factory = BACKENDS.get(config.service)
    if factory is None:
        raise status_exception(f"Unknown service [{config.service}]", 400)
    settings = options.get("settings")
    if settings is None:
        settings = ServerSettings.from_env()
    check_urls(config, allow_link_local=settings.allow_link_local_urls)
    return factory(config, **{**options, "settings": settings})
