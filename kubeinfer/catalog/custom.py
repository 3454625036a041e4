"""Custom: any HTTP model, described by a request template and JSONPath response parsers.

The ``request`` template is a JSON body in which ``${input}``, ``${query}``,
``${input_type}``, ``${top_n}``, ``${return_documents}``, each ``secret_parameters`` key
and each ``task_settings.parameters`` key are replaced by JSON values; ``headers`` and
``url`` take the same placeholders as plain text. ``response.json_parser`` names, per
task type, where the answer's values are.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField


class CustomEmbeddingType(str, Enum):
    FLOAT = "float"
    BYTE = "byte"
    BIT = "bit"
    BINARY = "binary"


class TextEmbeddingParser(Settings):
    text_embeddings: str = Field(description="JSONPath of the vectors, e.g. $.data[*].embedding[*].")
    embedding_type: CustomEmbeddingType | None = None


class SparseEmbeddingParser(Settings):
    token_path: str = Field(description="JSONPath of each input's tokens.")
    weight_path: str = Field(description="JSONPath of each input's weights.")


class RerankParser(Settings):
    relevance_score: str = Field(description="JSONPath of the scores.")
    reranked_index: str | None = Field(default=None, description="JSONPath of the documents' indexes.")
    document_text: str | None = Field(default=None, description="JSONPath of the documents' texts.")


class CompletionParser(Settings):
    completion_result: str = Field(description="JSONPath of the generated texts.")


class InputTypeTranslation(Settings):
    translation: dict[str, str] | None = Field(
        default=None, description="Elasticsearch's input type (ingest, search...) -> the value put in ${input_type}."
    )
    default: str | None = None


def _response_model(parser: type[Settings]) -> type[Settings]:
    class Response(Settings):
        json_parser: parser  # type: ignore[valid-type]
        error_parser: dict[str, str] | None = None

    Response.__name__ = Response.__qualname__ = f"{parser.__name__}Response"
    return Response


class CustomServiceSettings(ExternalServiceSettings):
    secret_parameters: dict[str, SecretValue] = SecretField(
        "Secret values (API keys, tokens) substituted for ${name} in the url, headers and request."
    )
    url: str = UrlField("The URL the request is sent to.")
    headers: dict[str, str] | None = Field(default=None, description="HTTP headers; may hold ${name} placeholders.")
    query_parameters: list[list[str]] | None = Field(default=None, description="[key, value] pairs added to the URL.")
    request: str = Field(description="The JSON body, with ${input}, ${query} and other placeholders.")
    input_type: InputTypeTranslation | None = None
    batch_size: int | None = Field(default=None, gt=0)

    @field_validator("query_parameters")
    @classmethod
    def _pairs(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        for pair in value or []:
            if len(pair) != 2:
                raise ValueError("each of [query_parameters] must be a list of two strings, a key and a value")
        return value


def _settings(parser: type[Settings]) -> type[Settings]:
    name = parser.__name__.removesuffix("Parser")
    return type(f"Custom{name}ServiceSettings", (CustomServiceSettings,), {
        "__annotations__": {"response": _response_model(parser)},
        "__module__": __name__,
        "response": Field(description="Where the answer's values are: {json_parser: {...}}."),
    })


class CustomTaskSettings(Settings):
    parameters: dict[str, str | int | float | bool] | None = Field(
        default=None, description="Values substituted for ${name} in the request; a request's own override them."
    )


CustomTextEmbeddingServiceSettings = _settings(TextEmbeddingParser)
CustomSparseEmbeddingServiceSettings = _settings(SparseEmbeddingParser)
CustomRerankServiceSettings = _settings(RerankParser)
CustomCompletionServiceSettings = _settings(CompletionParser)

SPEC = ServiceSpec(
    name="custom",
    label="Custom",
    service_settings={
        TaskType.COMPLETION: CustomCompletionServiceSettings,
        TaskType.RERANK: CustomRerankServiceSettings,
        TaskType.SPARSE_EMBEDDING: CustomSparseEmbeddingServiceSettings,
        TaskType.TEXT_EMBEDDING: CustomTextEmbeddingServiceSettings,
    },
    task_settings={t: CustomTaskSettings for t in (
        TaskType.COMPLETION, TaskType.RERANK, TaskType.SPARSE_EMBEDDING, TaskType.TEXT_EMBEDDING,
    )},
    default_rate_limit=10000,
    description="Any HTTP model: a request template and JSONPath response parsers.",
)
