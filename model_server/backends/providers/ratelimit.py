"""A token bucket per inference endpoint, at the endpoint's requests per minute.

A request takes a token; when none is left it reserves the next one and waits for it,
as long as that wait fits in the request's timeout. A request whose turn would come
after its deadline is refused at once with a 429 in Elasticsearch's shape: waiting the
full timeout first would only hold the caller longer for the same answer.
"""

from __future__ import annotations

import asyncio
import time

from kubeinfer.errors import ElasticsearchError


class RateLimiter:
    def __init__(self, requests_per_minute: int | None, *, inference_id: str = "", clock=time.monotonic) -> None:
        self.requests_per_minute = requests_per_minute
        self.inference_id = inference_id
        self._clock = clock
        if requests_per_minute:
            self._rate = requests_per_minute / 60.0  # tokens per second
            # Bursts of up to one second's worth of requests (at least one).
            self._capacity = max(1.0, self._rate)
            self._tokens = self._capacity
            self._updated = clock()

    async def acquire(self, timeout: float) -> None:
        """Take a token, waiting at most ``timeout`` seconds; else raise a 429."""
        if not self.requests_per_minute:
            return
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return
        wait = (1.0 - self._tokens) / self._rate
        if wait > timeout:
            raise ElasticsearchError(
                429,
                "status_exception",
                f"Rate limit of [{self.requests_per_minute}] requests per minute exceeded for inference endpoint "
                f"[{self.inference_id}]: no request slot within the [{timeout:g}s] timeout",
            )
        # Reserve the token now so that later callers queue behind this one.
        self._tokens -= 1.0
        await asyncio.sleep(wait)
