"""Who is using the console, and the checks every console page passes before it runs.

``ConsoleRoute`` is the API's ``AuthorizedRoute`` (the same declared permissions, the same
checks) with a session cookie instead of a bearer token, and answers a person can read: a
visitor without a session is sent to sign in (and back), a refusal is a page that names the
role it needs. A form (any method but GET) must come from the console itself: its ``Origin``
(or ``Referer``) is this server's, and it carries the session's CSRF token.

The session cookie (``conveyor_session``) is HttpOnly and SameSite=Lax, Secure over HTTPS,
and set for the console's host, or for the domain given with ``--cookie-domain`` so that
sign-in works for apps on hosts of that domain (the proxy removes it before a request reaches
an app).
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.permissions import AuthorizedRoute, need_of
from conveyor.console.settings import ConsoleSettings
from conveyor.console.templates import render
from conveyor.domain.access import Permission, User
from conveyor.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from conveyor.services import sign_in
from conveyor.services.context import Services
from conveyor.storage.sessions import Session

COOKIE = "conveyor_session"


class ConsoleRoute(AuthorizedRoute):
    """A console page: the declared permission, checked with the visitor's session."""

    def authenticate(self, request: Request) -> tuple[User, object]:
        services: Services = request.app.state.context.services
        cookie = request.cookies.get(COOKIE)
        found = sign_in.session_user(services, cookie) if cookie else None
        if found is None:
            raise Unauthorized("sign in to see this page")
        return found

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super(AuthorizedRoute, self).get_route_handler()
        need = need_of(self)

        async def checked(request: Request) -> Response:
            return _hardened(await answer(request))

        async def answer(request: Request) -> Response:
            try:
                if need.permission is not Permission.PUBLIC:
                    user, session, environments = await run_in_threadpool(
                        self._check, request, need
                    )
                    request.state.user = user
                    request.state.session = session
                    request.state.checked_environments = environments
                    # Live streams ask again as they go: a sign-out, a disabled user or a
                    # revoked role ends them.
                    request.state.recheck = lambda: self._check(request, need)
                if request.method not in ("GET", "HEAD"):
                    await _same_origin(request)
                return await handler(request)
            except NotFound as missing:
                return page_error(request, 404, "Not found", str(missing))
            except InvalidInput as wrong:
                return page_error(request, 400, "Not understood", str(wrong))
            except Unauthorized:
                if request.method == "GET":
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse(
                        "/signin?" + urllib.parse.urlencode({"next": target}), status_code=303
                    )
                return page_error(request, 401, "Sign in first", "Your session has ended.")
            except Forbidden as refused:
                return page_error(request, 403, "Not allowed", str(refused))

        return checked


#: Sent with every console answer: no framing (clickjacking), scripts and everything else
#: only from the console itself (its one script; no inline script to inject into), no
#: plugins, and no MIME sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _hardened(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "cache-control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _same_origin(request: Request) -> None:
    """A form is accepted only from the console's own pages: its Origin (else Referer) is
    this server, and, for a signed-in user, it carries the session's CSRF token."""
    here = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer", "")
        parts = urllib.parse.urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None
    if origin != here:
        raise Forbidden("this form did not come from the console's own page; open it again")
    session: Session | None = getattr(request.state, "session", None)
    if session is not None:
        form = await request.form()
        given = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
        if not hmac.compare_digest(given.encode(), session.csrf.encode()):
            raise Forbidden("this form has expired; open the page again and repeat")


def page_error(request: Request, status: int, title: str, message: str) -> Response:
    return render(
        "error.html",
        status=status,
        title=title,
        message=message,
        user=getattr(request.state, "user", None),
        csrf=_csrf(request),
    )


def _csrf(request: Request) -> str:
    session: Session | None = getattr(request.state, "session", None)
    return session.csrf if session is not None else ""


def page_values(request: Request, **values: Any) -> dict[str, Any]:
    """What every page's layout needs: the user, the CSRF token for its forms, and the notice
    an action left for it."""
    return {
        "user": getattr(request.state, "user", None),
        "csrf": _csrf(request),
        "notice": _notice(request),
        **values,
    }


def redirect_with_notice(request: Request, path: str, notice: str) -> RedirectResponse:
    """To ``path`` (a console page), which shows ``notice``: sealed, so a link made elsewhere
    cannot put words of its own in the console's mouth."""
    query = urllib.parse.urlencode({"notice": notice, "seal": _seal(request, notice)})
    return RedirectResponse(f"{path}?{query}", status_code=303)


def _notice(request: Request) -> str:
    notice = request.query_params.get("notice", "")
    seal = request.query_params.get("seal", "")
    if notice and hmac.compare_digest(seal.encode(), _seal(request, notice).encode()):
        return notice
    return ""


def _seal(request: Request, notice: str) -> str:
    services: Services = request.app.state.context.services
    return str(services.store.keys.token_digest("notice:" + notice))[:24]


def safe_next(target: str | None, request: Request, seal: str = "") -> str:
    """Where to go after signing in: a path of the console, or an app's address on one of
    this server's listeners that the proxy sent the visitor from (its ``seal``); never
    elsewhere (no open redirect, and no link to an app made by someone else)."""
    if not target:
        return "/"
    parts = urllib.parse.urlsplit(target)
    if (
        not parts.scheme
        and not parts.netloc
        and target.startswith("/")
        and not target.startswith("//")
    ):
        return target
    allowed: Callable[[str], bool] = request.app.state.context.is_app_address
    services: Services = request.app.state.context.services
    sealed = hmac.compare_digest(seal.encode(), sign_in.seal_next(services, target).encode())
    return target if sealed and allowed(target) else "/"


def next_values(request: Request, target: str | None, seal: str = "") -> dict[str, str]:
    """``next`` (made safe) and its seal, for the sign-in page's form and links."""
    safe = safe_next(target, request, seal)
    services: Services = request.app.state.context.services
    return {"next": safe, "seal": sign_in.seal_next(services, safe)}


def signin_page(
    request: Request,
    target: str | None,
    seal: str = "",
    *,
    username: str = "",
    error: str | None = None,
) -> Response:
    """The sign-in form; with an ``error`` it answers 401 and shows why."""
    oidc = request.app.state.context.console.oidc
    return render(
        "signin.html",
        status=401 if error else 200,
        **page_values(
            request,
            title="Sign in",
            **next_values(request, target, seal),
            username=username,
            error=error,
            oidc=oidc.label if oidc else None,
        ),
    )


def set_session_cookie(
    response: Response, request: Request, value: str, settings: ConsoleSettings
) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=sign_in.SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        domain=settings.cookie_domain,
        path="/",
    )
