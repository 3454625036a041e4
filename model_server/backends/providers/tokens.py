"""Bearer tokens that expire: minted on first use, cached, refreshed ahead of expiry.

``TokenCache`` serialises refreshes (one exchange at a time, however many requests wait)
and renews a token ``REFRESH_MARGIN`` seconds before it expires. The exchange itself
(Google's JWT grant, IBM's IAM API key grant) is a coroutine given by the service module.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

# Refresh this long before expiry, as Google's and IBM's client libraries do.
REFRESH_MARGIN = 300.0

Exchange = Callable[[], Awaitable[tuple[str, float]]]  # -> (token, seconds until expiry)


class TokenCache:
    def __init__(self, exchange: Exchange, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._exchange = exchange
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.exchanges = 0

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - REFRESH_MARGIN

    async def token(self) -> str:
        if self._fresh():
            return self._token  # type: ignore[return-value]
        async with self._lock:
            if not self._fresh():
                token, expires_in = await self._exchange()
                self.exchanges += 1
                self._token, self._expires_at = token, self._clock() + float(expires_in)
        return self._token  # type: ignore[return-value]
