"""Signing in with an OpenID Connect provider (`--oidc-issuer`), with `authlib` (the OAuth
client) and `joserfc` (its successor for checking the ID token, as authlib recommends).

The authorization code flow with PKCE: the console sends the browser to the provider with a
fresh state, nonce and code verifier (kept in a short-lived cookie, MACed with the server's
keys so the browser cannot alter it), takes the code back, exchanges it for tokens, checks the
ID token's signature (the provider's published keys), issuer, audience, expiry and nonce, and
signs in the Conveyor user named by the configured claim (`preferred_username` by default).
That user must exist and be active: the provider says who someone is, Conveyor says what they
may do.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from conveyor.api.context import Context
from conveyor.api.permissions import needs
from conveyor.console.session import (
    ConsoleRoute,
    safe_next,
    set_session_cookie,
    signin_page,
)
from conveyor.console.settings import OidcSettings
from conveyor.domain.access import Permission
from conveyor.errors import ConveyorError
from conveyor.services import sign_in
from conveyor.storage import audit, users

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

_FLOW = "conveyor_oidc"
_FLOW_SECONDS = 600
_metadata: dict[str, tuple[float, dict[str, Any]]] = {}


def _provider(settings: OidcSettings) -> dict[str, Any]:
    """The provider's metadata, fetched once an hour."""
    cached = _metadata.get(settings.issuer)
    if cached is not None and time.monotonic() - cached[0] < 3600:
        return cached[1]
    url = settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
    found = requests.get(url, timeout=10).json()
    # OpenID Connect Discovery: the document must name the issuer it was fetched for.
    if str(found.get("issuer", "")).rstrip("/") != settings.issuer.rstrip("/"):
        raise ValueError(
            f"its metadata names issuer {found.get('issuer')!r}, not {settings.issuer}"
        )
    _metadata[settings.issuer] = (time.monotonic(), found)
    return dict(found)


def _callback(request: Request) -> str:
    """The redirect URI registered at the provider: under the console's public address when
    one is configured (`--console-url`), not one built from a request's Host header."""
    public = request.app.state.context.console_url
    base = public or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base.rstrip('/')}/signin/oidc/callback"


def _seal(request: Request, data: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    return body + "." + _mac(request, body)


def _open(request: Request, sealed: str | None) -> dict[str, Any] | None:
    if not sealed or "." not in sealed:
        return None
    body, mac = sealed.rsplit(".", 1)
    if not hmac.compare_digest(mac.encode(), _mac(request, body).encode()):
        return None
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body.encode()))
    return data if data.get("until", 0) > time.time() else None


def _mac(request: Request, body: str) -> str:
    keys = request.app.state.context.services.store.keys
    return str(keys.token_digest("oidc-flow:" + body))


def _failed(request: Request, context: Context, message: str) -> Response:
    return signin_page(request, "/", error=message)


@router.get("/signin/oidc", openapi_extra=needs(Permission.PUBLIC))
def start(request: Request, context: Context, next: str = "/", seal: str = "") -> Response:
    settings = context.console.oidc
    if settings is None:
        return _failed(request, context, "This server has no single sign-on configured.")
    try:
        provider = _provider(settings)
    except (requests.RequestException, ValueError) as exc:
        return _failed(request, context, f"The sign-on provider cannot be reached ({exc}).")
    state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
    client = OAuth2Session(
        settings.client_id,
        settings.client_secret,
        scope="openid profile email",
        redirect_uri=_callback(request),
        code_challenge_method="S256",
    )
    url, _ = client.create_authorization_url(
        provider["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
    )
    response = RedirectResponse(url, status_code=303)
    flow = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": safe_next(next, request, seal),
        "until": time.time() + _FLOW_SECONDS,
    }
    response.set_cookie(
        _FLOW,
        _seal(request, flow),
        max_age=_FLOW_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/signin/oidc",
    )
    return response


@router.get("/signin/oidc/callback", openapi_extra=needs(Permission.PUBLIC))
def callback(request: Request, context: Context, code: str = "", state: str = "") -> Response:
    settings = context.console.oidc
    flow = _open(request, request.cookies.get(_FLOW))
    if settings is None or flow is None or not hmac.compare_digest(flow["state"], state):
        return _failed(request, context, "That sign-on answer is not one this server asked for.")
    try:
        provider = _provider(settings)
        client = OAuth2Session(
            settings.client_id, settings.client_secret, redirect_uri=_callback(request)
        )
        token = client.fetch_token(
            provider["token_endpoint"], code=code, code_verifier=flow["verifier"]
        )
        keys = KeySet.import_key_set(requests.get(provider["jwks_uri"], timeout=10).json())
        decoded = jwt.decode(token["id_token"], keys)
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": provider["issuer"]},
            aud={"essential": True, "value": settings.client_id},
            nonce={"essential": True, "value": flow["nonce"]},
            exp={"essential": True},
        ).validate(decoded.claims)
        claims = decoded.claims
    except (requests.RequestException, JoseError, KeyError, ValueError) as exc:
        return _failed(request, context, f"The sign-on answer could not be checked ({exc}).")
    name = str(claims.get(settings.username_claim) or "")
    if settings.username_claim == "email" and claims.get("email_verified") is not True:
        return _failed(request, context, "The provider has not verified that email address.")
    account = f"{provider['issuer']} {claims.get('sub', '')}"
    with context.services.store.transaction() as connection:
        user = users.get_user(connection, name) if name else None
        if user is None or user.disabled:
            return _failed(
                request,
                context,
                f"{name or 'That account'} is not an active user of this Conveyor; ask an "
                "admin to add you (`conveyor users add`).",
            )
        linked = users.credentials(connection, name)
        if not linked.intact:
            return _failed(request, context, f"{name}'s sign-in details do not verify.")
        if linked.oidc_subject is None:
            # The first single sign-on links the user to this provider account; from then
            # on only that account (issuer and subject, which the provider never reuses)
            # signs in as them, whatever the claim says.
            users.link_oidc_subject(connection, name, account)
            audit.record(connection, name, "user.oidc-linked", name, {"account": account})
        elif not hmac.compare_digest(linked.oidc_subject, account):
            return _failed(
                request,
                context,
                f"{name} signs in with another account at this provider; ask an admin.",
            )
    address = request.client.host if request.client else "unknown"
    try:
        signed = sign_in.open_session(context.services, user, "oidc", address)
    except ConveyorError as exc:
        return _failed(request, context, str(exc))
    response = RedirectResponse(flow["next"], status_code=303)
    set_session_cookie(response, request, signed.cookie, context.console)
    response.delete_cookie(_FLOW, path="/signin/oidc")
    return response
