"""OAuth 2.0's client credentials grant (RFC 6749 section 4.4): a provider's calls carry a
bearer token that the endpoint's ``client_id`` and ``client_secret`` are exchanged for.

``ClientCredentialsGrant`` posts ``grant_type=client_credentials`` and the ``scope`` to a
token endpoint and reads the access token and its lifetime from the answer (section 5.1);
``TokenCache`` keeps it and exchanges again before it expires. Where the client's
credentials go is the subclass's choice: HTTP Basic, as every authorization server must
accept (section 2.3.1), or the form's body, as Microsoft Entra ID documents. The service
modules say where the token endpoint is and which credentials it takes; this module knows
no provider.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from .tokens import TokenExchangeBackend

# A token answer without ``expires_in`` (optional in section 5.1) is trusted this long.
DEFAULT_LIFETIME = 3600.0


def parse_token_answer(response: Any) -> tuple[str, float]:
    """Section 5.1's answer: a bearer ``access_token`` and, optionally, ``expires_in``."""
    answer = response.json()
    token_type = str(answer.get("token_type") or "")
    if token_type.lower() != "bearer":
        raise ValueError(f"the token endpoint issued a token of type [{token_type}], not a bearer token")
    token = answer["access_token"]
    if not isinstance(token, str) or not token:
        raise ValueError("the token endpoint's [access_token] is not a string")
    expires_in = answer.get("expires_in")
    return token, DEFAULT_LIFETIME if expires_in is None else float(expires_in)


def basic_credentials(client_id: str, client_secret: str) -> str:
    """Section 2.3.1: both parts form-encoded, then joined and base64-encoded."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class ClientCredentialsGrant(TokenExchangeBackend):
    """A provider backend whose calls carry a token got with the endpoint's client credentials."""

    token_name = "an OAuth 2.0 access token"
    # Where the client authenticates itself: "basic" (the Authorization header) or "body".
    client_authentication = "basic"

    def token_url(self) -> str:
        raise NotImplementedError

    async def _exchange(self) -> tuple[str, float]:
        client_id, client_secret = self.setting("client_id"), self.secret("client_secret")
        form = {"grant_type": "client_credentials", "scope": " ".join(self.setting("scopes") or ())}
        headers = {}
        if self.client_authentication == "body":
            form.update(client_id=client_id, client_secret=client_secret)
        else:
            headers["Authorization"] = basic_credentials(client_id, client_secret)
        return await self.post_token_form(self.token_url(), form, parse_token_answer, headers=headers)

    def credentials(self) -> dict[str, str]:
        """No static credential: ``authorize`` adds the token to each call."""
        return {}
