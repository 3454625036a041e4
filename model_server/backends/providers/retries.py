"""When and how long to wait before sending a request to a provider again, as a tenacity
policy.

Retried: 429 and 5xx answers and connection failures (an attempt raises
``RetryableFailure`` for those). The wait grows exponentially with full jitter, or is
what the provider's ``Retry-After`` asks for; a wait that would end past the request's
deadline is not taken, nor a seventh attempt, and the last failure stands.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Awaitable, Callable, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_random_exponential

from kubeinfer.errors import ElasticsearchError
from .outbound import Answer

Reply = TypeVar("Reply")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
MAX_ATTEMPTS = 6
BASE_DELAY = 0.2
MAX_DELAY = 10.0


class RetryableFailure(Exception):
    """An attempt that failed in a way worth another: the error to report if it is the
    last, and the provider's answer (``None`` when there was none)."""

    def __init__(self, error: ElasticsearchError, response: httpx.Response | Answer | None = None) -> None:
        super().__init__(error.reason)
        self.error = error
        self.response = response


def retryable(response: httpx.Response | Answer) -> bool:
    return response.status_code in RETRYABLE_STATUS


def retry_after(response: httpx.Response | Answer | None) -> float | None:
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


def _failure(retry_state: RetryCallState) -> RetryableFailure | None:
    exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
    return exc if isinstance(exc, RetryableFailure) else None


class wait_for_provider(wait_base):
    """What ``Retry-After`` asks for, else exponential backoff with full jitter."""

    def __init__(self) -> None:
        self.backoff = wait_random_exponential(multiplier=BASE_DELAY, max=MAX_DELAY)

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = _failure(retry_state)
        asked = retry_after(failure.response if failure is not None else None)
        return asked if asked is not None else self.backoff(retry_state)


class stop_at_deadline(stop_base):
    """Stop when the next wait would end at or past ``deadline`` (a ``clock()`` time)."""

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline is not None and self.clock() + retry_state.upcoming_sleep >= self.deadline


def policy(deadline: float | None, clock: Callable[[], float],
           before_sleep: Callable[[RetryCallState], Any] | None = None) -> AsyncRetrying:
    """The retrying of one request that must be answered by ``deadline`` (``None``: no limit)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(RetryableFailure),
        wait=wait_for_provider(),
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_at_deadline(deadline, clock),
        before_sleep=before_sleep,
        reraise=True,
    )


async def with_retries(attempt: Callable[[], Awaitable[Reply]], deadline: float | None,
                       clock: Callable[[], float],
                       before_sleep: Callable[[RetryCallState], Any] | None = None) -> Reply:
    """``attempt()`` until it answers, retried by ``policy``; the last failure's error otherwise.

    The first attempt runs on its own: nearly every request is answered by it, and
    tenacity's per-call state was a measurable share of the proxy's time per request. A
    first failure is handed to the policy as its first attempt, so waits, the log line
    and the attempt count are those of a policy that had made it itself.
    """
    try:
        return await attempt()
    except RetryableFailure as failure:
        first: RetryableFailure | None = failure

    async def again() -> Reply:
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await attempt()

    try:
        return await policy(deadline, clock, before_sleep)(again)
    except RetryableFailure as failure:
        raise failure.error from None
