"""Bearer tokens that expire: minted on first use, cached, refreshed ahead of expiry.

``TokenCache`` serialises refreshes (one exchange at a time, however many requests wait)
and renews a token ``REFRESH_MARGIN`` seconds before it expires. The exchange itself
(Google's JWT grant, IBM's IAM API key grant) is a coroutine given by the service module.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping

import httpx

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError
from . import faults
from .proxy import ProviderBackend

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


class TokenExchangeBackend(ProviderBackend):
    """A provider whose calls carry a bearer token got by posting a form to a token URL.

    Subclasses implement ``_exchange`` (usually with ``post_token_form``); the token is
    cached by a ``TokenCache`` and sent on every call.
    """

    # How failures name the token, e.g. "an IAM token".
    token_name = "an access token"

    def __init__(self, config: InferenceEndpointConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.tokens = TokenCache(self._mint)

    async def _exchange(self) -> tuple[str, float]:
        raise NotImplementedError

    async def _mint(self) -> tuple[str, float]:
        token, expires_in = await self._exchange()
        # The token is a credential too: no error message or log line may show it.
        self.redact = faults.Redactor([*self._secret_values(), token])
        return token, expires_in

    async def post_token_form(
        self, url: str, form: Mapping[str, str], parse: Callable[[httpx.Response], tuple[str, float]],
        *, headers: Mapping[str, str] | None = None,
    ) -> tuple[str, float]:
        try:
            response = await self.client.post(
                url, data=dict(form), headers={"Accept": "application/json", **(headers or {})}
            )
        except Exception as exc:  # transport failures of the token exchange
            raise ElasticsearchError(
                502, "status_exception", f"Failed to obtain {self.token_name} for the [{self.service}] service: "
                f"{type(exc).__name__}"
            ) from None
        if not response.is_success:
            raise self.provider_error(response)
        return self.translate(parse, response)

    async def authorize(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {await self.tokens.token()}"
