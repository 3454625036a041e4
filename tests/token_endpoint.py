"""A fake OAuth 2.0 token endpoint (RFC 6749 section 4.4, the client credentials grant)
that records the tokens it issued, and a provider route that answers only the token
issued last. Speaks the grant's documented form; knows no provider."""

from __future__ import annotations

import base64
from urllib.parse import unquote

from fake_providers import Received, Reply

CLIENT_ID = "kubeinfer-app"
CLIENT_SECRET = "client-secret-3f9a1c77e2b54d08"


class TokenEndpoint:
    """A token endpoint that speaks the client credentials grant and records what it issued."""

    def __init__(self, *, expires_in: int = 3600, client_in: str = "basic", client_secret: str = CLIENT_SECRET) -> None:
        self.expires_in, self.client_in = expires_in, client_in
        self.client_secret = client_secret  # the one it takes; a test rotates it
        self.issued: list[str] = []

    def __call__(self, received: Received) -> Reply:
        assert received.method == "POST"
        assert received.headers["content-type"] == "application/x-www-form-urlencoded"
        form = received.form
        assert form["grant_type"] == "client_credentials"
        if self.client_in == "basic":  # section 2.3.1: form-encoded id and secret, base64
            scheme, _, encoded = received.headers["authorization"].partition(" ")
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            assert scheme == "Basic" and "client_secret" not in form
        else:
            client_id, secret = form["client_id"], form["client_secret"]
            assert "authorization" not in received.headers
        if (unquote(client_id), unquote(secret)) != (CLIENT_ID, self.client_secret):
            return Reply(401, {"error": "invalid_client"})
        self.scope = form["scope"]
        self.issued.append(f"eyJhbGciOiJSUzI1NiJ9.access-token-number-{len(self.issued) + 1}.c2lnbmF0dXJl")
        return Reply(json={"access_token": self.issued[-1], "token_type": "Bearer", "expires_in": self.expires_in})


def bearer_checked(tokens: TokenEndpoint, answer):
    """A provider API that answers only calls carrying the token issued last; ``answer`` is
    a ``Reply`` or a handler of the request."""
    def handle(received: Received) -> Reply:
        if received.headers.get("authorization") != f"Bearer {tokens.issued[-1] if tokens.issued else ''}":
            return Reply(401, {"error": {"message": "Invalid authentication", "type": "invalid_request_error"}})
        return answer(received) if callable(answer) else answer
    return handle
