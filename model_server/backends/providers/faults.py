"""Provider failures as Elasticsearch errors.

- A provider's HTTP error keeps its status and message (4xx is passed back as is; 429 and
  5xx reach the caller only once retries are spent).
- A deadline passed is a 408; a connection failure a 502; an answer that cannot be read
  a 502 that says what was wrong with it.

Every reason goes through ``Redactor`` first: providers sometimes echo the credential they
were given, and a secret must never reach an error body or a log line.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import httpx

from kubeinfer.errors import ElasticsearchError

REDACTED = "[redacted]"
# How much of a provider's error body is worth quoting back.
MAX_MESSAGE = 1000


class Redactor:
    """Replaces every known secret value (and its JSON-escaped form) in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            values.add(json.dumps(secret)[1:-1])
            # A multi-line secret (a service account key) is also hidden line by line.
            values.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


def provider_message(response: httpx.Response) -> str:
    """The human part of a provider's error body, whatever its shape."""
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text.strip()[:MAX_MESSAGE]
    return _message_of(body)[:MAX_MESSAGE]


def _message_of(body: Any) -> str:
    # OpenAI/Azure/Mistral/Anthropic/Google: {"error": {"message": ..}}; Cohere: {"message": ..};
    # watsonx: {"errors": [{"message": ..}]}; Alibaba: {"message": ..}; Hugging Face: {"error": ".."}.
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        for key in ("message", "Message", "detail", "errorMessage"):
            if isinstance(body.get(key), str):
                return body[key]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict) and "message" in errors[0]:
            return str(errors[0]["message"])
    return json.dumps(body)


def _status_reason(status: int, inference_id: str, service: str) -> str:
    if status == 429:
        what = "a rate limit status code"
    elif status >= 500:
        what = "a server error status code"
    elif status in (401, 403):
        what = "an authentication error status code"
    elif status == 404:
        what = "a not found status code"
    elif status == 400:
        what = "an input validation error response"
    else:
        what = "an unsuccessful status code"
    return f"Received {what} for request from inference entity id [{inference_id}] status [{status}]"


def provider_error(
    response: httpx.Response, *, inference_id: str, service: str, redact: Redactor, message: str | None = None
) -> ElasticsearchError:
    """The Elasticsearch error for a provider's non-2xx answer."""
    status = response.status_code
    text = message if message is not None else provider_message(response)
    reason = _status_reason(status, inference_id, service)
    if text:
        reason += f". Error message: [{redact(text)}]"
    # Keep the provider's status: 4xx is the caller's to fix, 429 says "slow down",
    # 5xx says the provider failed. Anything odd becomes a 502.
    if not 400 <= status <= 599:
        status = 502
    return ElasticsearchError(status, "status_exception", reason)


def timed_out(timeout: float, service: str) -> ElasticsearchError:
    return ElasticsearchError(
        408, "status_exception", f"Request timed out after [{timeout:g}s] waiting for the [{service}] service"
    )


def unreachable(exc: Exception, service: str, redact: Redactor) -> ElasticsearchError:
    detail = redact(str(exc)) or type(exc).__name__
    return ElasticsearchError(
        502, "status_exception", f"Failed to send request to the [{service}] service: {type(exc).__name__}: {detail}"
    )


def malformed(service: str, inference_id: str, detail: str, redact: Redactor) -> ElasticsearchError:
    return ElasticsearchError(
        502,
        "status_exception",
        f"Failed to parse the response of the [{service}] service for inference entity id [{inference_id}]: "
        f"{redact(detail)[:MAX_MESSAGE]}",
    )
