"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``: what every
answer under ``/v1`` takes, errors of the routes and of the middleware in front alike.

Kept apart from ``errors`` so that the middleware (``request_body``), which ``errors``
installs, can answer in it too. Knows nothing of endpoints.
"""

from __future__ import annotations

from typing import Any

# The OpenAI-compatible routes live under this prefix and answer errors in OpenAI's shape.
OPENAI_PREFIX = "/v1"
# What OpenAI's API calls an error of each HTTP status.
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                       404: "invalid_request_error", 406: "invalid_request_error", 408: "timeout",
                       409: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error_body(status: int, message: str, *, param: str | None = None,
                      code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers errors."""
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
