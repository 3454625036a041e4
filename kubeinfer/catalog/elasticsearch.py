"""Models run in-process by the kubeinfer model server: built-in E5, ELSER and rerank
models, and any Hugging Face model id or local path (what Eland uploads to Elasticsearch)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from ._base import AdaptiveAllocations, ServiceSpec, Settings, TaskType

# Elasticsearch's built-in model ids, and the open models kubeinfer serves for them.
BUILTIN_MODELS: dict[str, str] = {
    ".multilingual-e5-small": "intfloat/multilingual-e5-small",
    # ELSER's weights are not public. OpenSearch's SPLADE-style bi-encoder stands in: Apache-2.0
    # (naver's SPLADE v3 checkpoints are CC BY-NC-SA, not for commercial use), a WordPiece
    # vocabulary like ELSER's, one model for queries and documents as ELSER is, and the same
    # log(1 + relu) max-pooled weights. Replace it with KUBEINFER_BUILTIN_MODEL_ELSER_MODEL_2.
    ".elser_model_2": "opensearch-project/opensearch-neural-sparse-encoding-v2-distill",
    ".elser_model_2_linux-x86_64": "opensearch-project/opensearch-neural-sparse-encoding-v2-distill",
    ".rerank-v1": "cross-encoder/ms-marco-MiniLM-L-6-v2",
}


# Elasticsearch's upper bound on threads per allocation.
MAX_THREADS = 32


class LocalModelServiceSettings(Settings):
    model_id: str = Field(description="A built-in id (.multilingual-e5-small, .elser_model_2, .rerank-v1), "
                                      "a Hugging Face model id, or a local path.")
    num_allocations: int | None = Field(
        default=None, ge=1, description="Replicas of the model server; or give adaptive_allocations."
    )
    num_threads: int = Field(ge=1, le=MAX_THREADS, description="Inference threads per allocation (CPU cores): "
                                                             "a power of 2, at most 32.")
    adaptive_allocations: AdaptiveAllocations | None = Field(
        default=None, description="Scale replicas with the load (a HorizontalPodAutoscaler); or give num_allocations."
    )
    deployment_id: str | None = None

    # As in Elasticsearch: a fixed number of allocations, or adaptive ones.
    one_of_required = (("num_allocations", "adaptive_allocations"),)

    @field_validator("num_threads")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        # Elasticsearch's rule for threads per allocation; more threads than cores only thrash.
        if value & (value - 1):
            raise ValueError(f"[num_threads] must be a power of 2 less than or equal to {MAX_THREADS}")
        return value


class ElserServiceSettings(LocalModelServiceSettings):
    model_id: str = ".elser_model_2"


class RerankTaskSettings(Settings):
    # Elasticsearch's server default for the models it runs.
    return_documents_default: ClassVar[bool] = True

    return_documents: bool | None = Field(default=None, description="Return the documents' text; true by default.")
    # Newer Elasticsearch takes top_n on the inference request; kept here so that an
    # endpoint can set a default and a request's top_n validates as a task setting.
    top_n: int | None = Field(default=None, gt=0, description="How many of the best documents to return.")


SPEC = ServiceSpec(
    name="elasticsearch",
    label="Elasticsearch",
    service_settings={
        # Beyond Elasticsearch's own list: image-and-text models (CLIP) for the embedding task.
        TaskType.EMBEDDING: LocalModelServiceSettings,
        TaskType.RERANK: LocalModelServiceSettings,
        TaskType.SPARSE_EMBEDDING: LocalModelServiceSettings,
        TaskType.TEXT_EMBEDDING: LocalModelServiceSettings,
    },
    task_settings={TaskType.RERANK: RerankTaskSettings},
    description="Built-in and Hugging Face models run by the kubeinfer model server (text, and images with CLIP).",
)
