"""The building blocks every service module uses: task types, secret values,
rate limits, the settings base model and the ``ServiceSpec`` record.

This module knows no service by name; the service modules do.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, ClassVar, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from ..errors import status_exception, validation_exception
from .regions import RegionSetting

# The vectors' similarity is also a fact of the resource's status, whose module owns it.
from ..resource import Similarity  # noqa: F401


class TaskType(str, Enum):
    TEXT_EMBEDDING = "text_embedding"
    SPARSE_EMBEDDING = "sparse_embedding"
    RERANK = "rerank"
    COMPLETION = "completion"
    CHAT_COMPLETION = "chat_completion"
    EMBEDDING = "embedding"

    def __str__(self) -> str:  # "text_embedding", as Elasticsearch prints it
        return self.value


# Elasticsearch's input types of embedding requests: what the texts are for.
class InputType(str, Enum):
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    INGEST = "ingest"
    SEARCH = "search"


def enum_subset(name: str, *members: Enum) -> Any:
    """A str enum of some members of another: the values one service or task accepts."""
    return Enum(name, [(m.name, m.value) for m in members], type=str)  # type: ignore[misc]


# The input types of services that know only documents and queries.
SearchInputType = enum_subset("SearchInputType", InputType.INGEST, InputType.SEARCH)


# Which end of an input too long for the model a provider cuts, or NONE for an error.
class Truncate(str, Enum):
    END = "END"
    NONE = "NONE"
    START = "START"


# The settings that name where a provider is reached: a URL, or a bare host.
URL_SETTINGS = ("url", "streaming_url", "target", "host")


def _has_credentials(value: str) -> bool:
    try:
        return "@" in urlsplit(value if "//" in value else f"//{value}").netloc
    except ValueError:
        return False


class Settings(BaseModel):
    """Base of every settings model: unknown keys are an error, as in Elasticsearch; a URL
    setting that carries a user name or password (``https://user:pass@host``) is refused:
    it would sit in plain text in the endpoint's settings, be returned by every GET, and be
    sent beside the secret settings meant for the provider."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)

    # Names of fields that hold secrets; filled by ``__pydantic_init_subclass__``.
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Names of fields that say where requests (and the secrets they carry) are sent: a URL
    # or a host of the user's choosing. Filled by ``__pydantic_init_subclass__``.
    url_fields: ClassVar[tuple[str, ...]] = ()
    # Groups of fields of which at least one must be given (Elasticsearch's
    # "does not contain one of the required settings [a, b]").
    one_of_required: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Groups of fields of which at most one may be given.
    mutually_exclusive: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Groups of fields given all together or not at all (OAuth 2.0's client credentials).
    required_together: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Field name (and alias) -> {a value's lower case: the enum's own value}; filled below.
    enum_spellings: ClassVar[dict[str, dict[str, str]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.secret_fields = tuple(
            name for name, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("x-kubeinfer-secret")
        )
        cls.url_fields = tuple(
            name for name, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("x-kubeinfer-url")
        )
        spellings = {}
        for name, info in cls.model_fields.items():
            values = {str(member.value) for enum in _enums_in(info.annotation) for member in enum}
            if values:
                table = {value.lower(): value for value in sorted(values)}
                spellings[name] = table
                if info.alias:
                    spellings[info.alias] = table
        cls.enum_spellings = spellings

    @model_validator(mode="before")
    @classmethod
    def _canonical_enum_values(cls, data: Any) -> Any:
        # Elasticsearch reads every enum setting as ``valueOf(value.trim().toUpperCase())``:
        # any letter case, blanks around ignored. The value is kept in the enum's own spelling.
        if not cls.enum_spellings or not isinstance(data, dict):
            return data
        return {
            key: cls.enum_spellings[key].get(value.strip().lower(), value)
            if isinstance(value, str) and key in cls.enum_spellings else value
            for key, value in data.items()
        }

    @model_validator(mode="after")
    def _groups_given_together(self) -> Any:
        for group in self.required_together:
            given = [name for name in group if getattr(self, name) is not None]
            if given and len(given) < len(group):
                raise validation_exception(together_reason("service_settings", group))
        return self

    @model_validator(mode="after")
    def _no_credentials_in_urls(self) -> "Settings":
        for name in URL_SETTINGS:
            value = getattr(self, name, None) if name in type(self).model_fields else None
            if isinstance(value, str) and _has_credentials(value):
                # The value is not echoed: its user information is a secret.
                raise validation_exception(
                    f"[{name}] must not carry a user name or password (user:password@host); "
                    "give credentials in the service's secret settings instead"
                )
        return self


def together_reason(scope: str, group: tuple[str, ...]) -> str:
    """The refusal of a group of settings given in part (the CRD's rules say it too)."""
    return f"[{scope}] must have all of the settings [{', '.join(group)}] or none of them"


def _enums_in(annotation: Any) -> list[type[Enum]]:
    """The enums a field's type takes a value of (``X | None``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [annotation]
    if typing.get_origin(annotation) in (list, dict, tuple, set):
        return []
    return [enum for arg in typing.get_args(annotation) for enum in _enums_in(arg)]


# A Secret's name is a DNS subdomain; a key is what Kubernetes allows in a Secret's data,
# but never ".", ".." or a name starting with "..". Both patterns are RE2 (no look-ahead),
# as the API server evaluates a CRD's patterns, and they keep a reference from naming any
# path outside the folder its Secret is mounted in.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^([-_a-zA-Z0-9][-._a-zA-Z0-9]*|\.[-_a-zA-Z0-9][-._a-zA-Z0-9]*)$"


class SecretKeyName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=253, pattern=SECRET_NAME_PATTERN,
                      description="Name of a Secret in the endpoint's namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN,
                     description="Key within the Secret.")


class SecretKeyRef(BaseModel):
    """A reference to a key of a Kubernetes Secret: the only form a CR may hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    secret_key_ref: SecretKeyName = Field(alias="secretKeyRef")


# A secret-bearing setting: a plain string (HTTP API and local mode) or a reference.
SecretValue = Union[SecretKeyRef, SecretStr]


def SecretField(description: str, *, required: bool = True) -> Any:  # noqa: N802 - reads like a type
    """A settings field that holds a secret; never logged, never returned by GET."""
    extra = {"x-kubeinfer-secret": True}
    if required:
        return Field(description=description, json_schema_extra=extra)
    return Field(default=None, description=description, json_schema_extra=extra)


def UrlField(description: str, *, required: bool = True, **constraints: Any) -> Any:  # noqa: N802
    """A settings field that says where requests go: a URL or a host of the user's choosing,
    held to the server's URL policy and never sent a Secret its owner did not allow there."""
    extra = {"x-kubeinfer-url": True}
    if required:
        return Field(description=description, json_schema_extra=extra, **constraints)
    return Field(default=None, description=description, json_schema_extra=extra, **constraints)


class RateLimit(Settings):
    requests_per_minute: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Requests per minute sent to the provider; the service's default when unset."
    )


class AdaptiveAllocations(Settings):
    enabled: bool = False
    min_number_of_allocations: Annotated[int, Field(ge=0)] | None = None
    max_number_of_allocations: Annotated[int, Field(ge=1)] | None = None


class ExternalServiceSettings(Settings):
    """Settings every external provider accepts."""

    url: str | None = UrlField(
        "kubeinfer extension: replaces the provider's base URL (private endpoints, proxies, tests).", required=False,
    )
    rate_limit: RateLimit | None = None


class EmbeddingSettings(Settings):
    """Settings that describe the vectors an embedding endpoint returns."""

    dimensions: Annotated[int, Field(gt=0)] | None = None
    similarity: Similarity | None = None
    max_input_tokens: Annotated[int, Field(gt=0)] | None = None


def providers_for(task: TaskType, known: type[Enum], *members: Enum) -> Any:
    """The type of ``provider`` in a service's settings for ``task``: one of ``members``,
    the providers of ``known`` with models for that task; any other provider of ``known``
    gets Elasticsearch's refusal (not pydantic's enum error)."""
    subset = enum_subset(f"{known.__name__}For{task.name.title().replace('_', '')}", *members)

    def refuse_providers_without_models(value: Any) -> Any:
        if isinstance(value, str):
            spelled = {str(v).lower(): str(v) for v in known._value2member_map_}.get(value.strip().lower())
            if spelled is not None and spelled not in subset._value2member_map_:
                raise status_exception(f"The [{task}] task type for provider [{spelled}] is not available")
        return value

    return Annotated[subset, BeforeValidator(refuse_providers_without_models)]


class NoTaskSettings(Settings):
    pass


@dataclass(frozen=True)
class ServiceSpec:
    """Everything kubeinfer knows about one service of the create inference API."""

    name: str
    # Task type -> the service_settings model for that task.
    service_settings: dict[TaskType, type[Settings]]
    # Task type -> the task_settings model, or one model for every task type;
    # NoTaskSettings where the service has none.
    task_settings: dict[TaskType, type[Settings]] | type[Settings] = field(default_factory=dict)
    # Elasticsearch's default rate limit (requests per minute) per task type, or one for
    # every task type; None for services that run a model in-process.
    default_rate_limit: dict[TaskType, int] | int | None = None
    description: str = ""
    # The name people know the service by ("OpenAI", "Amazon Bedrock"), as Kibana shows it.
    label: str = ""
    # The setting that names the cloud region requests go to, for the region policy;
    # None for services without one.
    region: RegionSetting | None = None

    def __post_init__(self) -> None:
        if isinstance(self.task_settings, type):
            object.__setattr__(self, "task_settings", dict.fromkeys(self.service_settings, self.task_settings))
        if isinstance(self.default_rate_limit, int):
            object.__setattr__(self, "default_rate_limit", dict.fromkeys(self.service_settings, self.default_rate_limit))

    @property
    def task_types(self) -> tuple[TaskType, ...]:
        return tuple(self.service_settings)

    @property
    def external(self) -> bool:
        return self.default_rate_limit is not None

    def supports(self, task_type: TaskType | str) -> bool:
        return TaskType(task_type) in self.service_settings

    def service_settings_model(self, task_type: TaskType | str) -> type[Settings]:
        return self.service_settings[TaskType(task_type)]

    def task_settings_model(self, task_type: TaskType | str) -> type[Settings]:
        return self.task_settings.get(TaskType(task_type), NoTaskSettings)

    def rate_limit_for(self, task_type: TaskType | str) -> int | None:
        if self.default_rate_limit is None:
            return None
        return self.default_rate_limit.get(TaskType(task_type))

    def secret_fields(self, task_type: TaskType | str) -> tuple[str, ...]:
        return self.service_settings_model(task_type).secret_fields
