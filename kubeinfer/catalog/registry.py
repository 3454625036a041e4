"""The list of services: the one place that names them all."""

from __future__ import annotations

from . import (
    alibabacloud_ai_search, amazonbedrock, anthropic, azureaistudio, azureopenai, cohere, elasticsearch, elser,
    googleaistudio, googlevertexai, hugging_face, mistral, openai, watsonxai,
)
from ._base import ServiceSpec

SERVICES: dict[str, ServiceSpec] = {
    m.SPEC.name: m.SPEC
    for m in (
        alibabacloud_ai_search, amazonbedrock, anthropic, azureaistudio, azureopenai, cohere, elasticsearch, elser,
        googleaistudio, googlevertexai, hugging_face, mistral, openai, watsonxai,
    )
}
