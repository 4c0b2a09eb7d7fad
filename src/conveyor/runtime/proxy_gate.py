"""What the proxy asks before it forwards a request to an app: may this visitor view it? And
what it tells afterwards: a page was viewed. The answers come from the server (who may view
which app, whose session a cookie is), through ``Gate``; the proxy only enforces them.

Conveyor's own cookies never reach an app: the console's session cookie (``conveyor_session``,
sent to every port of the host, and to every subdomain with a cookie domain) and the proxy's
visitor cookies are taken out of the request's ``Cookie`` header before it is forwarded, so an
app (a Dev app included) never sees a credential of the console.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

SESSION_COOKIE = "conveyor_session"
#: One per browser, for a year: distinct anonymous viewers.
VISITOR_COOKIE = "conveyor_visitor"
#: One per browser session: sessions.
VISIT_COOKIE = "conveyor_visit"


@dataclass(frozen=True)
class Decision:
    """May the request go on? ``user`` is who it comes from (None: anonymous)."""

    allowed: bool
    user: str | None = None
    #: The app needs signing in here (not public): its answers are private to the viewer,
    #: and requests that change things must come from its own origin.
    private: bool = False
    #: For an anonymous visitor of an app that needs signing in: where to sign in.
    sign_in: str | None = None
    #: For a signed-in user without access: why, for the 403 page.
    reason: str = ""


@dataclass(frozen=True)
class Gate:
    """``decide(environment, app, session_cookie, url)`` and ``viewed(environment, app,
    viewer, session)``: both given by the server."""

    decide: Callable[[str, str, str | None, str], Awaitable[Decision]]
    viewed: Callable[[str, str, str, str], None]


def cookies_of(header: str) -> dict[str, str]:
    """The cookies of a ``Cookie`` header, read leniently (one odd cookie set by some app must
    not hide the others); the first of a name wins, as browsers send the most specific first."""
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip()
        if equals and name and name not in found:
            found[name] = value.strip().strip('"')
    return found


def is_private_cookie(cookie: str) -> bool:
    """Whether a cookie (``name=value...``, from a ``Cookie`` or a ``Set-Cookie`` header) is
    one of Conveyor's: every name starting ``conveyor_`` is reserved. Apps never receive them,
    and may not set them (to replace a visitor's console session with their own)."""
    name = cookie.split("=", 1)[0].strip().strip('"').lower()
    return name.removeprefix("__host-").removeprefix("__secure-").startswith("conveyor_")


def is_private_set_cookie(header: str) -> bool:
    """Whether an app's ``Set-Cookie`` header must be dropped: one of Conveyor's cookies, or
    one a browser could send as one: a cookie without a name (``=conveyor_session=x`` goes
    back as ``conveyor_session=x``), or whose value starts with a Conveyor cookie's name."""
    name, equals, value = header.partition(";")[0].partition("=")
    if not equals or not name.strip():
        return True
    return is_private_cookie(name) or ("=" in value and is_private_cookie(value))


def without_private_cookies(header: str) -> str:
    """The ``Cookie`` header without Conveyor's own cookies (others kept byte for byte)."""
    kept = [part for part in header.split(";") if part.strip() and not is_private_cookie(part)]
    return ";".join(kept).strip()


def new_visitor() -> str:
    return secrets.token_urlsafe(16)
