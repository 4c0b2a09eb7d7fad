"""How the console signs people in: settings given to `conveyor serve`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OidcSettings:
    """An OpenID Connect provider people may sign in with."""

    issuer: str
    client_id: str
    client_secret: str
    #: The claim that names the Conveyor user (an existing, active user).
    username_claim: str = "preferred_username"
    label: str = "single sign-on"


@dataclass(frozen=True)
class ConsoleSettings:
    #: Domain the session cookie is set for (host routing: apps on its subdomains), or None.
    cookie_domain: str | None = None
    #: The OpenID Connect provider, when one is configured.
    oidc: OidcSettings | None = None
