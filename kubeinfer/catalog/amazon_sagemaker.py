"""Amazon SageMaker: ``InvokeEndpoint`` (and its streaming form) on a SageMaker endpoint,
signed with AWS Signature V4, in one of two ``api`` schemas: ``openai`` (OpenAI's
embeddings and chat completions bodies) or ``elastic`` (Elasticsearch's own request and
response bodies)."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from .regions import RegionSetting
from ._base import (
    ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, Similarity, TaskType,
)
from ..errors import status_exception, validation_exception


class SageMakerApi(str, Enum):
    OPENAI = "openai"
    ELASTIC = "elastic"


class SageMakerElementType(str, Enum):
    BYTE = "byte"
    FLOAT = "float"
    BIT = "bit"


# The task types each api schema serves (Elasticsearch's SageMakerSchemas).
API_TASKS = {
    "openai": {TaskType.TEXT_EMBEDDING, TaskType.COMPLETION, TaskType.CHAT_COMPLETION},
    "elastic": {TaskType.TEXT_EMBEDDING, TaskType.COMPLETION, TaskType.CHAT_COMPLETION, TaskType.SPARSE_EMBEDDING,
                TaskType.RERANK},
}


class AmazonSageMakerServiceSettings(ExternalServiceSettings):
    access_key: SecretValue = SecretField("AWS access key id.")
    secret_key: SecretValue = SecretField("AWS secret access key.")
    endpoint_name: str = Field(description="The name of the SageMaker endpoint.")
    api: SageMakerApi = Field(description="The body format: openai or elastic.")
    region: str = Field(description="The AWS region of the endpoint, e.g. us-east-1.")
    target_model: str | None = Field(default=None, description="The model of a multi-model endpoint.")
    target_container_hostname: str | None = None
    inference_component_name: str | None = None
    batch_size: int | None = Field(default=None, gt=0)


class AmazonSageMakerEmbeddingServiceSettings(AmazonSageMakerServiceSettings):
    dimensions: int | None = Field(default=None, gt=0)
    similarity: Similarity | None = None
    element_type: SageMakerElementType | None = Field(
        default=None, description="Required with the elastic api: the type of the vectors the model returns."
    )

    @model_validator(mode="after")
    def _elastic_needs_element_type(self) -> "AmazonSageMakerEmbeddingServiceSettings":
        if self.api == SageMakerApi.ELASTIC.value and self.element_type is None:
            raise validation_exception("[service_settings] does not contain the required setting [element_type]")
        return self


def _for_tasks(*tasks: TaskType) -> type[AmazonSageMakerServiceSettings]:
    """Settings of a task that only some api schemas serve."""
    class Settings_(AmazonSageMakerServiceSettings):
        @model_validator(mode="after")
        def _api_serves_task(self):  # type: ignore[no-untyped-def]
            if not any(t in API_TASKS[str(self.api)] for t in tasks):
                raise status_exception(
                    f"Task [{tasks[0].value}] is not compatible for service [amazon_sagemaker] and api [{self.api}]"
                )
            return self

    name = "AmazonSageMaker" + tasks[0].value.title().replace("_", "") + "ServiceSettings"
    Settings_.__name__ = Settings_.__qualname__ = name
    return Settings_


class AmazonSageMakerTaskSettings(Settings):
    custom_attributes: str | None = None
    enable_explanations: str | None = None
    inference_id: str | None = None
    session_id: str | None = None
    target_variant: str | None = None
    user: str | None = Field(default=None, description="openai api: the user issuing the request.")


SPEC = ServiceSpec(
    name="amazon_sagemaker",
    label="Amazon SageMaker",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AmazonSageMakerServiceSettings),
        TaskType.RERANK: _for_tasks(TaskType.RERANK),
        TaskType.SPARSE_EMBEDDING: _for_tasks(TaskType.SPARSE_EMBEDDING),
        TaskType.TEXT_EMBEDDING: AmazonSageMakerEmbeddingServiceSettings,
    },
    task_settings={t: AmazonSageMakerTaskSettings for t in (
        TaskType.CHAT_COMPLETION, TaskType.COMPLETION, TaskType.RERANK, TaskType.SPARSE_EMBEDDING,
        TaskType.TEXT_EMBEDDING,
    )},
    # Elasticsearch calls SageMaker through the AWS SDK, without a rate limit of its own.
    default_rate_limit={},
    region=RegionSetting("aws", "region"),
    description="Amazon SageMaker endpoints (openai or elastic api), signed with SigV4.",
)
