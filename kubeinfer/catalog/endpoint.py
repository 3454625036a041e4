"""An inference endpoint's configuration, validated against the catalog.

Two ways in: Elasticsearch's create body (``parse_endpoint``) and an InferenceEndpoint
manifest (``from_manifest``). Two ways out: Elasticsearch's GET view, with secrets left
out and defaults filled in (``InferenceEndpointConfig.es_view``), and a manifest
(``InferenceEndpointConfig.to_manifest``). Validation failures raise
``ElasticsearchError`` with the reason Elasticsearch gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Mapping

from pydantic import Field, SecretStr, ValidationError

from ..errors import ElasticsearchError, status_exception, validation_exception
from ..resource import API_VERSION, KIND
from ._base import SecretKeyRef, ServiceSpec, Settings, TaskType
from .preconfigured import PRECONFIGURED
from .registry import SERVICES

# Elasticsearch's rule for inference ids, which must also be a valid Kubernetes name here;
# and the ids of Elasticsearch's preconfigured endpoints, which only they may hold.
INFERENCE_ID_PATTERN = (
    r"^([a-z0-9]([-a-z0-9._]{0,251}[a-z0-9])?|"
    + "|".join(i.replace(".", r"\.") for i in sorted(PRECONFIGURED)) + ")$"
)


class ChunkingStrategy(str, Enum):
    WORD = "word"
    SENTENCE = "sentence"
    NONE = "none"


class ChunkingSettings(Settings):
    """How Elasticsearch splits long inputs of embedding endpoints (in semantic_text).

    The model holds the union of every strategy's settings; ``parse_chunking_settings``
    applies each strategy's own rules, as Elasticsearch does."""

    strategy: ChunkingStrategy = ChunkingStrategy.SENTENCE
    max_chunk_size: int | None = Field(default=None, ge=10, description="Words per chunk (word: 10 to 300; "
                                                                         "sentence: 20 or more).")
    overlap: int | None = Field(default=None, ge=1, description="word: words shared by neighbouring chunks, "
                                                                "at most half of max_chunk_size.")
    sentence_overlap: int | None = Field(default=None, ge=0, le=1, description="sentence: 0 or 1 sentence shared.")


# The task types whose endpoints chunk long inputs (semantic_text), hence take chunking settings.
CHUNKED_TASK_TYPES = (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING, TaskType.EMBEDDING)

# Strategy -> (its settings, the required ones); Elasticsearch's chunking settings classes.
CHUNKING_SETTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "word": (("strategy", "max_chunk_size", "overlap"), ("max_chunk_size", "overlap")),
    "sentence": (("strategy", "max_chunk_size", "sentence_overlap"), ("max_chunk_size",)),
    "none": (("strategy",), ()),
}
_CHUNKING_NAMES = {"word": "Word based", "sentence": "Sentence based", "none": "None"}
DEFAULT_CHUNKING = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_chunking_settings(raw: Any) -> ChunkingSettings:
    """Elasticsearch's ChunkingSettingsBuilder: ``{}`` is the default (sentence, 250, 1);
    otherwise the strategy decides which settings are allowed and required."""
    scope = "chunking_settings"
    if not isinstance(raw, Mapping):
        raise validation_exception(f"[{scope}] must be an object")
    if not raw:
        return ChunkingSettings.model_validate(DEFAULT_CHUNKING)
    if "strategy" not in raw:
        raise ElasticsearchError(400, "illegal_argument_exception",
                                 "Can't generate Chunker without ChunkingStrategy provided")
    strategy = str(raw["strategy"]).strip().lower()
    if strategy not in CHUNKING_SETTINGS:
        raise ElasticsearchError(400, "illegal_argument_exception", f"Invalid chunkingStrategy {raw['strategy']}")
    allowed, required = CHUNKING_SETTINGS[strategy]
    problems = []
    invalid = [key for key in raw if key not in allowed]
    if invalid:
        problems.append(
            f"{_CHUNKING_NAMES[strategy]} chunking settings can not have the following settings: [{', '.join(invalid)}]"
        )
    values = {key: raw.get(key) for key in allowed if key != "strategy"}
    for key in required:
        if values.get(key) is None:
            problems.append(f"[{scope}] does not contain the required setting [{key}]")
        elif not _positive_int(values[key]) or values[key] <= 0:
            problems.append(f"[{scope}] Invalid value [{values[key]}]. [{key}] must be a positive integer")
    size = values.get("max_chunk_size")
    if _positive_int(size) and size > 0:
        low, high = (10, 300) if strategy == "word" else (20, None)
        if size < low:
            problems.append(f"[{scope}] Invalid value [{size}]. [max_chunk_size] must be a greater than or equal to [{low}]")
        if high is not None and size > high:
            problems.append(f"[{scope}] Invalid value [{size}]. [max_chunk_size] must be a less than or equal to [{high}]")
        overlap = values.get("overlap")
        if strategy == "word" and _positive_int(overlap) and overlap > size // 2:
            problems.append(f"[{scope}] Invalid value [{overlap}]. [overlap] must be a less than or equal to [{size // 2}]")
    if strategy == "sentence":
        overlap = values.get("sentence_overlap")
        if overlap is None:
            values["sentence_overlap"] = 1
        elif overlap not in (0, 1) or isinstance(overlap, bool):
            problems.append(f"sentence_overlap[{overlap}] must be either 0 or 1")
    if problems:
        raise validation_exception(*problems)
    return ChunkingSettings.model_validate({"strategy": strategy, **{k: v for k, v in values.items() if v is not None}})


def parse_task_type(value: str) -> TaskType:
    """Elasticsearch's parsing: case-insensitive, surrounding blanks ignored."""
    try:
        return TaskType(str(value).strip().lower())
    except ValueError:
        raise status_exception(f"Unknown task_type [{value}]") from None


def returns_documents(config: InferenceEndpointConfig, task_settings: Mapping[str, Any]) -> bool:
    """Whether a rerank answer carries the documents' text, by Elasticsearch's one rule:
    ``return_documents`` as the request or the endpoint sets it, else the service's default,
    declared as ``return_documents_default`` on its rerank task settings; without one,
    false: Elasticsearch then sends the provider nothing and shows no text."""
    given = task_settings.get("return_documents")
    if given is not None:
        return bool(given)
    return bool(getattr(config.spec.task_settings_model(TaskType.RERANK), "return_documents_default", False))


def check_task_type(config: InferenceEndpointConfig, requested: TaskType | None, *, inference: bool = False) -> None:
    """A task type named in a request's path must be the endpoint's own.

    Elasticsearch words the refusal one way for inference and another for getting,
    updating or deleting an endpoint; ``inference`` picks the first.
    """
    if requested is None or requested is config.task_type:
        return
    if inference:
        raise status_exception(f"Incompatible task_type, the requested type [{requested}] does not match the model "
                               f"type [{config.task_type}]")
    raise status_exception(f"Requested task type [{requested}] does not match the inference endpoint's task type "
                           f"[{config.task_type}]")


def get_service(name: str, inference_id: str = "") -> ServiceSpec:
    spec = SERVICES.get(name)
    if spec is None:
        raise status_exception(f"Unknown service [{name}] for model [{inference_id}]")
    return spec


def is_inference_id(value: object) -> bool:
    """Whether ``value`` is a valid inference id, in full (no trailing newline)."""
    return isinstance(value, str) and re.fullmatch(INFERENCE_ID_PATTERN, value) is not None


def validate_inference_id(inference_id: str) -> None:
    if not is_inference_id(inference_id):
        raise validation_exception(
            f"Invalid inference_id; [{inference_id}] must be lowercase letters, digits, '-', '_' or '.', "
            "start and end with a letter or digit, and be at most 253 characters"
        )


@dataclass(frozen=True)
class InferenceEndpointConfig:
    inference_id: str
    task_type: TaskType
    service: str
    service_settings: Settings
    task_settings: Settings
    chunking_settings: ChunkingSettings | None = None

    @property
    def spec(self) -> ServiceSpec:
        return SERVICES[self.service]

    @property
    def rate_limit(self) -> int | None:
        """Requests per minute: the configured value, else the service's default."""
        configured = getattr(self.service_settings, "rate_limit", None)
        if configured is not None and configured.requests_per_minute is not None:
            return configured.requests_per_minute
        return self.spec.rate_limit_for(self.task_type)

    def url_settings(self) -> dict[str, str]:
        """The settings given that say where requests go (the catalog's ``UrlField``s), by name."""
        settings = self.service_settings
        return {name: value for name in settings.url_fields if (value := getattr(settings, name, None))}

    # ---- secrets -------------------------------------------------------------------
    def secret_values(self) -> dict[str, SecretKeyRef | SecretStr]:
        """Each secret setting by name; a map of secrets (the custom service's
        ``secret_parameters``) gives one entry per key, named ``<field>.<key>``."""
        out = {}
        for name in self.service_settings.secret_fields:
            value = getattr(self.service_settings, name)
            if isinstance(value, Mapping):
                out.update({f"{name}.{key}": item for key, item in value.items()})
            elif value is not None:
                out[name] = value
        return out

    def secret_refs(self) -> dict[str, SecretKeyRef]:
        return {k: v for k, v in self.secret_values().items() if isinstance(v, SecretKeyRef)}

    def plain_secrets(self) -> dict[str, SecretStr]:
        return {k: v for k, v in self.secret_values().items() if isinstance(v, SecretStr)}

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting; an error if it is still a reference."""
        value = self.secret_values().get(name) if "." in name else getattr(self.service_settings, name, None)
        if value is None:
            return None
        if isinstance(value, SecretKeyRef):
            raise status_exception(f"[service_settings] secret [{name}] has not been resolved", 500)
        return value.get_secret_value()

    def resolve_secrets(self, resolve: Callable[[str, SecretKeyRef], str]) -> "InferenceEndpointConfig":
        """A copy with each ``secretKeyRef`` replaced by ``resolve(field_name, ref)``."""
        refs = self.secret_refs()
        if not refs:
            return self
        return self._with_secrets({name: SecretStr(resolve(name, ref)) for name, ref in refs.items()})

    def with_secret_refs(self, refs: Mapping[str, SecretKeyRef]) -> "InferenceEndpointConfig":
        return self._with_secrets(refs)

    def _with_secrets(self, values: Mapping[str, SecretKeyRef | SecretStr]) -> "InferenceEndpointConfig":
        update: dict[str, Any] = {}
        for name, value in values.items():
            field, _, key = name.partition(".")
            if key:
                update.setdefault(field, dict(getattr(self.service_settings, field) or {}))[key] = value
            else:
                update[field] = value
        return replace(self, service_settings=self.service_settings.model_copy(update=update))

    # ---- views ---------------------------------------------------------------------
    def service_settings_view(self) -> dict[str, Any]:
        """service_settings as Elasticsearch returns them: no secrets, defaults filled in."""
        view = self.service_settings.model_dump(
            mode="json", exclude=set(self.service_settings.secret_fields), exclude_none=True
        )
        if self.rate_limit is not None:
            view["rate_limit"] = {"requests_per_minute": self.rate_limit}
        return view

    def es_view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "inference_id": self.inference_id,
            "task_type": self.task_type.value,
            "service": self.service,
            "service_settings": self.service_settings_view(),
        }
        task = self.task_settings.model_dump(mode="json", exclude_none=True)
        if task or type(self.task_settings).model_fields:
            body["task_settings"] = task
        if self.chunking_settings is not None:
            body["chunking_settings"] = self.chunking_settings.model_dump(mode="json", exclude_none=True)
        elif self.task_type in CHUNKED_TASK_TYPES:
            # Elasticsearch 9 stores (and shows) the default for endpoints created without any.
            body["chunking_settings"] = dict(DEFAULT_CHUNKING)
        return body

    def to_manifest(self, *, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """An InferenceEndpoint manifest. Plain secrets are refused: give references."""
        if self.plain_secrets():
            fields = ", ".join(sorted(self.plain_secrets()))
            raise validation_exception(f"[service_settings] secrets [{fields}] must be given as secretKeyRef")
        settings = self.service_settings.model_dump(mode="json", by_alias=True, exclude_none=True)
        spec: dict[str, Any] = {
            "taskType": self.task_type.value,
            "inferenceId": self.inference_id,
            "service": self.service,
            "serviceSettings": settings,
        }
        task = self.task_settings.model_dump(mode="json", exclude_none=True)
        if task:
            spec["taskSettings"] = task
        if self.chunking_settings is not None:
            spec["chunkingSettings"] = self.chunking_settings.model_dump(mode="json", exclude_none=True)
        metadata: dict[str, Any] = {"name": name or self.inference_id}
        if namespace:
            metadata["namespace"] = namespace
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def _java_value(value: Any) -> str:
    """A value as Java's toString prints it in Elasticsearch's messages."""
    if isinstance(value, Mapping):
        return _java_map(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_java_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _java_map(values: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={_java_value(v)}" for k, v in values.items()) + "}"


def validate_settings(
    model: type[Settings], raw: Any, scope: str, service: str
) -> Settings:
    """``raw`` as ``model`` (a service's settings or task settings), or the error
    Elasticsearch gives for it, naming ``scope`` and ``service``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise validation_exception(f"[{scope}] must be an object")
    try:
        settings = model.model_validate(dict(raw))
    except ValidationError as exc:
        unknown = {}
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if err["type"] == "extra_forbidden" and len(loc) == 1:
                unknown[loc[0]] = raw.get(loc[0])
            elif err["type"] == "missing":
                path = f"{scope}.{'.'.join(loc[:-1])}" if len(loc) > 1 else scope
                problems.append(f"[{path}] does not contain the required setting [{loc[-1]}]")
            else:
                field = ".".join(loc) or scope
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"[{scope}] Invalid value for [{field}]: {msg}")
        if unknown:
            raise status_exception(
                f"Model configuration contains settings [{_java_map(unknown)}] unknown to the [{service}] service"
            ) from None
        raise validation_exception(*problems) from None
    missing = [
        group for group in model.one_of_required if all(getattr(settings, name) is None for name in group)
    ]
    if missing:
        raise validation_exception(
            *(f"[{scope}] does not contain one of the required settings [{', '.join(group)}]" for group in missing)
        )
    return settings


def parse_endpoint(inference_id: str, task_type: TaskType | str, body: Mapping[str, Any]) -> InferenceEndpointConfig:
    """Validate Elasticsearch's create body for ``PUT /_inference/<task_type>/<inference_id>``."""
    if not isinstance(body, Mapping):
        raise ElasticsearchError(400, "parse_exception", "request body is required")
    validate_inference_id(inference_id)
    task = parse_task_type(task_type) if isinstance(task_type, str) else task_type
    allowed = {"service", "service_settings", "task_settings", "chunking_settings", "task_type", "inference_id"}
    extra = {k: v for k, v in body.items() if k not in allowed}
    if body.get("inference_id") is not None and body["inference_id"] != inference_id:
        raise status_exception(
            f"Cannot resolve conflicting inference_id parameter in the request URL [{inference_id}] "
            f"and the request body [{body['inference_id']}]"
        )
    service_name = body.get("service")
    if not service_name:
        raise validation_exception("[service] is required")
    spec = get_service(str(service_name), inference_id)
    if extra:
        raise status_exception(
            f"Model configuration contains settings [{_java_map(extra)}] unknown to the [{spec.name}] service"
        )
    if not spec.supports(task):
        raise status_exception(f"The [{spec.name}] service does not support task type [{task.value}]")
    service_settings = validate_settings(
        spec.service_settings_model(task), body.get("service_settings"), "service_settings", spec.name
    )
    task_settings = validate_settings(
        spec.task_settings_model(task), body.get("task_settings"), "task_settings", spec.name
    )
    chunking = body.get("chunking_settings")
    chunking_settings = None
    if chunking is not None:
        if task not in CHUNKED_TASK_TYPES:
            # Elasticsearch reads chunking settings only for embeddings; elsewhere they are left over.
            raise status_exception(
                f"Model configuration contains settings [{_java_map({'chunking_settings': chunking})}] "
                f"unknown to the [{spec.name}] service"
            )
        chunking_settings = parse_chunking_settings(chunking)
    return InferenceEndpointConfig(
        inference_id=inference_id,
        task_type=task,
        service=spec.name,
        service_settings=service_settings,
        task_settings=task_settings,
        chunking_settings=chunking_settings,  # type: ignore[arg-type]
    )


def from_manifest(manifest: Mapping[str, Any]) -> InferenceEndpointConfig:
    """Validate an InferenceEndpoint manifest (its ``spec``) against the catalog."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise validation_exception(f"manifest must have apiVersion [{API_VERSION}] and kind [{KIND}]")
    metadata = manifest.get("metadata") or {}
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        raise validation_exception("[spec] is required")
    inference_id = spec.get("inferenceId") or metadata.get("name")
    if not inference_id:
        raise validation_exception("[spec.inferenceId] or [metadata.name] is required")
    if "taskType" not in spec:
        raise validation_exception("[spec] does not contain the required setting [taskType]")
    body = {
        "service": spec.get("service"),
        "service_settings": spec.get("serviceSettings"),
        "task_settings": spec.get("taskSettings"),
    }
    if spec.get("chunkingSettings") is not None:
        body["chunking_settings"] = spec["chunkingSettings"]
    return parse_endpoint(str(inference_id), str(spec["taskType"]), body)
