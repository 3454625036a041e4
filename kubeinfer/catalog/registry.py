"""The list of services: the one place that names them all."""

from __future__ import annotations

from . import (
    ai21, alibabacloud_ai_search, amazon_sagemaker, amazonbedrock, anthropic, azureaistudio, azureopenai, cohere,
    contextualai, custom, deepseek, elasticsearch, elser, fireworksai, googleaistudio, googlevertexai, groq,
    hugging_face, jinaai, llama, mistral, nvidia, openai, openshift_ai, voyageai, watsonxai,
)
from ._base import ServiceSpec

SERVICES: dict[str, ServiceSpec] = {
    m.SPEC.name: m.SPEC
    for m in (
        ai21, alibabacloud_ai_search, amazon_sagemaker, amazonbedrock, anthropic, azureaistudio, azureopenai, cohere,
        contextualai, custom, deepseek, elasticsearch, elser, fireworksai, googleaistudio, googlevertexai, groq,
        hugging_face, jinaai, llama, mistral, nvidia, openai, openshift_ai, voyageai, watsonxai,
    )
}
