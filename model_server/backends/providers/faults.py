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

from kubeinfer import strict_json
from kubeinfer.errors import ElasticsearchError
from .outbound import Answer

REDACTED = "[redacted]"
# How much of a provider's error body is worth quoting back.
MAX_MESSAGE = 1000
# How much of it is read at all; redaction runs over this much, before the cut to MAX_MESSAGE.
MAX_READ = 64 * 1024
# A run of this many characters of a secret is enough to hide: a fragment of a key helps
# whoever guesses the rest.
MIN_FRAGMENT = 8


def _fold(text: str) -> str:
    """``text`` lower-cased character by character, so that offsets stay the same."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class Redactor:
    """Hides every known secret in a text: whole or in part, in any letter case, JSON-escaped
    or not. Any run of ``MIN_FRAGMENT`` characters of a secret is replaced, so a message cut
    short, or quoting only part of a key, leaks nothing either."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            # As a JSON string holds it; a multi-line secret (a service account key) is
            # then hidden line by line too, each line being a run of the secret.
            values.add(json.dumps(secret)[1:-1])
        self._short = sorted({_fold(v) for v in values if len(v) < MIN_FRAGMENT}, key=len, reverse=True)
        self._fragments = {
            _fold(v)[i:i + MIN_FRAGMENT] for v in values if len(v) >= MIN_FRAGMENT
            for i in range(len(v) - MIN_FRAGMENT + 1)
        }

    def __call__(self, text: str) -> str:
        if not text or not (self._fragments or self._short):
            return text
        folded = _fold(text)
        hidden = bytearray(len(text))
        for i in range(len(text) - MIN_FRAGMENT + 1):
            if folded[i:i + MIN_FRAGMENT] in self._fragments:
                hidden[i:i + MIN_FRAGMENT] = b"\x01" * MIN_FRAGMENT
        for value in self._short:
            start = folded.find(value)
            while start != -1:
                hidden[start:start + len(value)] = b"\x01" * len(value)
                start = folded.find(value, start + 1)
        if not any(hidden):
            return text
        out, i = [], 0
        while i < len(text):
            if hidden[i]:
                while i < len(text) and hidden[i]:
                    i += 1
                out.append(REDACTED)
            else:
                j = i
                while j < len(text) and not hidden[j]:
                    j += 1
                out.append(text[i:j])
                i = j
        return "".join(out)


def provider_message(response: httpx.Response | Answer) -> str:
    """The human part of a provider's error body, whatever its shape; not yet redacted nor cut."""
    try:
        body: Any = strict_json.loads(response.content)
    except ValueError:
        return response.content[:MAX_READ].decode("utf-8", "replace").strip()
    return _message_of(body)[:MAX_READ]


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
    response: httpx.Response | Answer, *, inference_id: str, service: str, redact: Redactor, message: str | None = None
) -> ElasticsearchError:
    """The Elasticsearch error for a provider's non-2xx answer."""
    status = response.status_code
    text = message if message is not None else provider_message(response)
    reason = _status_reason(status, inference_id, service)
    if text:
        # Redacted first, then cut: a cut made first could leave part of a secret behind.
        reason += f". Error message: [{redact(text[:MAX_READ])[:MAX_MESSAGE]}]"
    # Keep the provider's status: 4xx is the caller's to fix, 429 says "slow down",
    # 5xx says the provider failed. Anything odd becomes a 502.
    if not 400 <= status <= 599:
        status = 502
    return ElasticsearchError(status, "status_exception", reason)


def timed_out(timeout: float, service: str) -> ElasticsearchError:
    return ElasticsearchError(
        408, "status_exception", f"Request timed out after [{timeout:g}s] waiting for the [{service}] service"
    )


# OS-level causes, by what they mean for the caller; the transport may wrap them in
# another exception (httpx-aiohttp reports a connection reset as ConnectTimeout).
_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionResetError, "ConnectionReset"),
    (ConnectionRefusedError, "ConnectionRefused"),
    (ConnectionAbortedError, "ConnectionAborted"),
    (BrokenPipeError, "ConnectionClosed"),
)


def failure_name(exc: BaseException) -> str:
    """The name of a transport failure after what really happened, not its wrapper."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        for kind, name in _CAUSES:
            if isinstance(cause, kind):
                return name
        if type(cause).__name__ == "ServerDisconnectedError":
            return "ServerDisconnected"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def is_timeout(exc: BaseException) -> bool:
    """A transport failure that really is a timeout (not a reset the transport calls one)."""
    return isinstance(exc, httpx.TimeoutException) and failure_name(exc) == type(exc).__name__


def unreachable(exc: Exception, service: str, redact: Redactor) -> ElasticsearchError:
    name = failure_name(exc)
    detail = redact(str(exc))[:MAX_MESSAGE] or name
    return ElasticsearchError(
        502, "status_exception", f"Failed to send request to the [{service}] service: {name}: {detail}"
    )


def malformed(service: str, inference_id: str, detail: str, redact: Redactor) -> ElasticsearchError:
    return ElasticsearchError(
        502,
        "status_exception",
        f"Failed to parse the response of the [{service}] service for inference entity id [{inference_id}]: "
        f"{redact(detail[:MAX_READ])[:MAX_MESSAGE]}",
    )
