"""OAuth 2.0 client credentials (RFC 6749 section 4.4) as settings: the ``openai`` service
takes them with a ``token_url``, ``azureopenai`` with a Microsoft Entra ID ``tenant_id``.

Only the settings and their rules; fetching the token is the data plane's business.
"""

from __future__ import annotations

from pydantic import Field

from ..errors import validation_exception
from ._base import SecretField, SecretValue, Settings


class ClientCredentials(Settings):
    """``client_id``, ``client_secret`` and ``scopes``; a service names them, with the setting
    that says where to exchange them, in its ``required_together``."""

    client_id: str | None = Field(default=None, min_length=1,
                                  description="OAuth 2.0 client credentials: the application (client) ID.")
    client_secret: SecretValue | None = SecretField(
        "OAuth 2.0 client credentials: the application's secret.", required=False
    )
    scopes: list[str] | None = Field(default=None, min_length=1,
                                     description="OAuth 2.0 client credentials: the scopes asked for.")


def credentials_rule(scope: str, credentials: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Elasticsearch's words for a missing or doubled credential among ``credentials``."""
    names = [f"[{name}]" for name in credentials]
    listed = ", ".join(names[:-1]) + f" or the {names[-1]}"
    return (f"[{scope}] must have either the {listed} setting",
            f"[{scope}] must have only one of the {listed} settings")


def check_one_credential(settings: Settings, credentials: tuple[str, ...]) -> None:
    """Exactly one of ``credentials`` (secret settings) given, or Elasticsearch's refusal."""
    given = [name for name in credentials if getattr(settings, name) is not None]
    none_given, several_given = credentials_rule("secret_settings", credentials)
    if not given:
        raise validation_exception(none_given)
    if len(given) > 1:
        raise validation_exception(several_given)
