"""When and how long to wait before sending a request to a provider again.

Retried: 429 and 5xx answers and connection failures. The wait grows exponentially with
full jitter, or is what the provider's ``Retry-After`` asks for; a wait that would end
past the request's deadline is not taken, and the last failure stands.
"""

from __future__ import annotations

import email.utils
import random
import time

import httpx

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
MAX_ATTEMPTS = 6
BASE_DELAY = 0.2
MAX_DELAY = 10.0


def retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUS


def retry_after(response: httpx.Response | None) -> float | None:
    """Seconds asked for by ``Retry-After`` (delta-seconds or an HTTP date), if any."""
    if response is None:
        return None
    value = response.headers.get("retry-after") or response.headers.get("retry-after-ms")
    if not value:
        return None
    if "retry-after-ms" in response.headers and not response.headers.get("retry-after"):
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, response: httpx.Response | None = None, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
    asked = retry_after(response)
    if asked is not None:
        return asked
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** (attempt - 1)))
    return (rng or random).uniform(0.0, ceiling)
