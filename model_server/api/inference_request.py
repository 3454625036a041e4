"""Elasticsearch's inference request body and ``timeout`` parameter, validated into an
``InferenceRequest``; and the boolean query flags of its other calls.

Checks and messages follow Elasticsearch's ``InferenceAction.Request``: ``input`` is a
string or a list of strings and never empty, ``query`` belongs to rerank only,
``input_type`` to text_embedding only, ``return_documents``/``top_n`` to rerank only
(they are folded into the task settings), and request ``task_settings`` are merged over
the endpoint's and validated against the service's model.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from ..backends.base import InferenceRequest
from ..backends.content import CONTENT_KINDS, ContentItem
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.catalog import validate_settings
from kubeinfer.errors import ElasticsearchError

DEFAULT_TIMEOUT = 30.0
# Inputs one request may carry, whatever serves it (a local model or a provider);
# ``ServerSettings.max_inputs_per_request`` sets it for an app.
DEFAULT_MAX_INPUTS = 2048
# What Elasticsearch's parser calls itself in "unknown field" errors.
_PARSER_NAME = "cluster:internal/xpack/inference"
_FIELDS = {"input", "query", "input_type", "task_settings", "return_documents", "top_n", "timeout"}
# Elasticsearch's InputType values accepted over REST (case-insensitive).
INPUT_TYPES = ("ingest", "search", "classification", "clustering", "internal_ingest", "internal_search")
_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TIME_VALUE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)\s*$")


def request_validation_error(problem: str) -> ElasticsearchError:
    """Elasticsearch's ActionRequestValidationException, with one problem."""
    return ElasticsearchError(400, "action_request_validation_exception", f"Validation Failed: 1: {problem};")


def parse_time_value(value: str | None, setting: str = "timeout", default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds from an Elasticsearch time value (``30s``, ``500ms``, ``1m``); ``-1`` waits forever."""
    if value is None or value == "":
        return default
    text = str(value).strip().lower()
    if text in ("-1", "0"):
        return math.inf if text == "-1" else 0.0
    match = _TIME_VALUE.match(text)
    if not match:
        raise ElasticsearchError(
            400,
            "parse_exception",
            f"failed to parse setting [{setting}] with value [{value}] as a time value: unit is missing or unrecognized",
        )
    amount = float(match.group(1))
    if amount < 0:
        raise ElasticsearchError(
            400, "parse_exception", f"failed to parse setting [{setting}] with value [{value}] as a time value: "
            "negative durations are not supported"
        )
    return amount * _TIME_UNITS[match.group(2)]


def parse_boolean_flag(value: str | None, default: bool = False) -> bool:
    """A boolean query parameter as Elasticsearch reads one: ``true`` or ``false``, and a
    parameter given without a value means ``true``; anything else is refused, so that a
    typo (``dry_run=ture``) never does the opposite of what was asked."""
    if value is None:
        return default
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise ElasticsearchError(
        400, "illegal_argument_exception", f"Failed to parse value [{value}] as only [true] or [false] are allowed."
    )


def format_time_value(seconds: float) -> str:
    """Seconds as Elasticsearch prints a TimeValue: ``30s``, ``500ms``, ``1m``."""
    if math.isinf(seconds):
        return "-1"
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:g}{unit}" if amount != int(amount) else f"{int(amount)}{unit}"
    return f"{seconds * 1000:g}ms"


def _parse_input(body: Mapping[str, Any]) -> list[str]:
    raw = body.get("input")
    if raw is None:
        raise request_validation_error("Field [input] cannot be null")
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ElasticsearchError(
            400, "x_content_parse_exception", f"[{_PARSER_NAME}] failed to parse field [input]: "
            "expected a string or an array of strings"
        )
    if not raw:
        raise request_validation_error("Field [input] cannot be an empty array")
    return list(raw)


def _content_item(raw: Any) -> ContentItem:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("value"), str):
        raise ElasticsearchError(400, "x_content_parse_exception",
                                 f"[{_PARSER_NAME}] failed to parse field [input]: a content item needs a [value]")
    kind = str(raw.get("type", "")).lower()
    if kind not in CONTENT_KINDS:
        raise ElasticsearchError(400, "x_content_parse_exception",
                                 f"[{_PARSER_NAME}] failed to parse field [input]: unknown content type [{kind}], "
                                 f"must be one of [{', '.join(CONTENT_KINDS)}]")
    default_format = "text" if kind == "text" else "base64"
    fmt = str(raw.get("format", default_format)).lower()
    if fmt != default_format:
        raise request_validation_error(f"Invalid format [{fmt}] for content type [{kind}], must be [{default_format}]")
    return ContentItem(type=kind, value=raw["value"], format=fmt)


def _parse_contents(body: Mapping[str, Any]) -> tuple[list[str], tuple[tuple[ContentItem, ...], ...]]:
    """The ``embedding`` task's input: strings, ``content`` objects, or arrays of either."""
    raw = body.get("input")
    if raw is None:
        raise request_validation_error("Field [input] cannot be null")
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise request_validation_error("Field [input] cannot be an empty array")
    groups = []
    for item in items:
        if isinstance(item, str):
            groups.append((ContentItem(type="text", value=item),))
        elif isinstance(item, Mapping) and "content" in item:
            content = item["content"]
            group = tuple(_content_item(c) for c in (content if isinstance(content, list) else [content]))
            if not group:
                raise request_validation_error("Field [content] cannot be an empty array")
            groups.append(group)
        else:
            raise ElasticsearchError(400, "x_content_parse_exception", f"[{_PARSER_NAME}] failed to parse field "
                                     "[input]: expected a string, a content object or an array of them")
    texts = [" ".join(i.value for i in group if i.type == "text") for group in groups]
    return texts, tuple(groups)


def _parse_input_type(value: Any, task: TaskType) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in INPUT_TYPES:
        raise ElasticsearchError(
            400, "illegal_argument_exception",
            f"Unrecognized input_type [{value}], must be one of [{', '.join(INPUT_TYPES[:4])}]",
        )
    if task not in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING) and not value.lower().startswith("internal_"):
        raise request_validation_error(f"Field [input_type] cannot be specified for task type [{task.value}]")
    return value.lower()


def _merged_task_settings(config: InferenceEndpointConfig, overrides: Mapping[str, Any]) -> dict[str, Any]:
    base = config.task_settings.model_dump(mode="json", exclude_none=True)
    if not overrides:
        return base
    model = config.spec.task_settings_model(config.task_type)
    merged = validate_settings(model, {**base, **overrides}, "task_settings", config.service)
    return merged.model_dump(mode="json", exclude_none=True)


def _check_rerank_option(field: str, value: Any) -> None:
    """A request's own ``return_documents`` (a boolean) and ``top_n`` (a whole number, at
    least 1) as Elasticsearch's parser reads them, checked here because a service whose task
    settings lack the field gets it unvalidated (sent on, or used to cut the answer)."""
    wanted = bool if field == "return_documents" else int
    if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
        raise ElasticsearchError(400, "x_content_parse_exception", f"[{_PARSER_NAME}] failed to parse field [{field}]")
    if field == "top_n" and value < 1:
        raise request_validation_error("Field [top_n] must be greater than or equal to 1")


def parse_inference_request(
    config: InferenceEndpointConfig, body: Any, timeout: str | None = None, *, max_inputs: int = DEFAULT_MAX_INPUTS
) -> InferenceRequest:
    """Validate ``POST /_inference/...``'s body for the endpoint ``config``."""
    if not isinstance(body, Mapping):
        raise ElasticsearchError(400, "parse_exception", "request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ElasticsearchError(
            400, "x_content_parse_exception", f"[{_PARSER_NAME}] unknown field [{unknown[0]}]"
        )
    task = config.task_type
    contents: tuple[tuple[ContentItem, ...], ...] = ()
    if task is TaskType.EMBEDDING:
        inputs, contents = _parse_contents(body)
    else:
        inputs = _parse_input(body)
    if len(inputs) > max_inputs:
        raise request_validation_error(
            f"Field [input] has [{len(inputs)}] entries, more than the [{max_inputs}] one request to "
            f"[{config.inference_id}] may carry"
        )

    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise ElasticsearchError(400, "x_content_parse_exception", f"[{_PARSER_NAME}] failed to parse field [query]")
    if task is TaskType.RERANK:
        if query is None:
            raise request_validation_error(f"Field [query] cannot be null for task type [{task.value}]")
        if query == "":
            raise request_validation_error(f"Field [query] cannot be empty for task type [{task.value}]")
    elif query is not None and task in (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING):
        raise request_validation_error(f"Field [query] cannot be specified for task type [{task.value}]")

    overrides = body.get("task_settings") or {}
    if not isinstance(overrides, Mapping):
        raise ElasticsearchError(
            400, "x_content_parse_exception", f"[{_PARSER_NAME}] failed to parse field [task_settings]"
        )
    overrides = dict(overrides)
    # A rerank request's own top_n and return_documents override the task settings of the
    # same name; for services whose task settings have no such field (Voyage AI's top_k,
    # the custom service's ${top_n}) they travel beside the task settings, unvalidated by them.
    settings_fields = config.spec.task_settings_model(task).model_fields
    request_fields: dict[str, Any] = {}
    for field in ("return_documents", "top_n"):
        if body.get(field) is None:
            continue
        _check_rerank_option(field, body[field])
        if task is not TaskType.RERANK:
            raise request_validation_error(f"Field [{field}] cannot be specified for task type [{task.value}]")
        (overrides if field in settings_fields else request_fields)[field] = body[field]

    timeout_value = timeout if timeout is not None else body.get("timeout")
    return InferenceRequest(
        task_type=task,
        input=inputs,
        query=query,
        input_type=_parse_input_type(body.get("input_type"), task),
        task_settings={**_merged_task_settings(config, overrides), **request_fields},
        timeout=parse_time_value(timeout_value),
        contents=contents,
    )
