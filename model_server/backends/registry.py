"""Which code serves which service: the one map from a catalog service to its backend.

The catalog describes services and names no backend; this module is the other half of
that contract, and a test checks that every service of the catalog has an entry here.
Each backend's module is imported when an endpoint of its service is built: a model
server's start imports no provider client (aiohttp, cloud SDK signing), and the
local-model package defers torch until a model is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.config import ServerSettings
from kubeinfer.errors import status_exception

from .base import Backend
from .url_policy import check_urls

BackendFactory = Callable[..., Backend]

# The services whose API is OpenAI's share one backend (``openai_compatible.PROVIDERS``
# holds their facts; a test keeps the two lists equal).
OPENAI_COMPATIBLE = ("ai21", "deepseek", "fireworksai", "groq", "llama", "nvidia", "openshift_ai")

# Service -> the module (under this package) whose ``create_backend`` serves it. A module
# is imported when an endpoint of its service is built, so a model server imports no
# provider's client and a provider proxy no other provider's.
BACKENDS: dict[str, str] = {
    "elasticsearch": "local",
    "elser": "local",
    "alibabacloud-ai-search": "providers.alibabacloud_ai_search",
    "amazonbedrock": "providers.amazonbedrock",
    "anthropic": "providers.anthropic",
    "azureaistudio": "providers.azureaistudio",
    "azureopenai": "providers.azureopenai",
    "cohere": "providers.cohere",
    "googleaistudio": "providers.googleaistudio",
    "googlevertexai": "providers.googlevertexai",
    "hugging_face": "providers.hugging_face",
    "mistral": "providers.mistral",
    "openai": "providers.openai",
    "watsonxai": "providers.watsonxai",
    "amazon_sagemaker": "providers.amazon_sagemaker",
    "contextualai": "providers.contextualai",
    "custom": "providers.custom",
    "jinaai": "providers.jinaai",
    "voyageai": "providers.voyageai",
    **{name: "providers.openai_compatible" for name in OPENAI_COMPATIBLE},
}


def factory_of(service: str) -> BackendFactory | None:
    """The ``create_backend`` of ``service``'s module (imported now), or None."""
    module = BACKENDS.get(service)
    if module is None:
        return None
    return importlib.import_module(f"{__package__}.{module}").create_backend


def serves_locally(service: str) -> bool:
    """Whether ``service``'s models run in this process (no provider is called)."""
    return BACKENDS.get(service) == "local"


def create_backend(config: InferenceEndpointConfig, **options: Any) -> Backend:
    """Build the backend that serves ``config`` (secrets must already be resolved)."""
    factory = factory_of(config.service)
    if factory is None:
        raise status_exception(f"Unknown service [{config.service}]", 400)
    settings = options.get("settings")
    if settings is None:
        settings = ServerSettings.from_env()
    check_urls(config, allow_link_local=settings.allow_link_local_urls)
    return factory(config, **{**options, "settings": settings})
