"""The pages the proxy answers itself, for an app it cannot hand a request to: not deployed,
failing, nothing here, starting up from sleep, failed to wake. JSON for API clients, a small
HTML page for browsers.

Internal to ``conveyor.runtime.proxy``.
"""

from __future__ import annotations

import html
from typing import Protocol

from conveyor.runtime.proxy_http import Answer


class _Headers(Protocol):
    def get(self, name: str, default: str) -> str: ...


class Asking(Protocol):
    """What the pages look at in a request."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> _Headers: ...


def prefers_json(accept: str) -> bool:
    """Whether an Accept header ranks JSON at least as high as HTML (API clients, fetch())."""
    if "json" not in accept:
        return False
    json_quality = html_quality = 0.0
    for item in accept.split(","):
        media_type, *parameters = item.split(";")
        media_type = media_type.strip().lower()
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type == "application/json" or media_type.endswith("+json"):
            json_quality = max(json_quality, quality)
        elif media_type == "text/html":
            html_quality = max(html_quality, quality)
    return json_quality > 0 and json_quality >= html_quality


_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>{refresh}
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}
</style></head>
<body><h1>{title}</h1><p>{message}</p>{listing}<p><small>Conveyor</small></p></body>
</html>
"""


def page(
    request: Asking,
    status: int,
    code: str,
    title: str,
    message: str,
    *,
    apps: list[str] | None = None,
    retry_after: int | None = None,
    reload: bool = False,
) -> Answer:
    """A page the proxy answers itself: JSON for API clients, HTML for everyone else.
    ``retry_after``: seconds after which the client may try again; ``reload``: the HTML page
    reloads itself then."""
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if prefers_json(request.headers.get("Accept", "")):
        error: dict[str, object] = {"code": code, "message": message}
        if apps is not None:
            error["apps"] = apps
        return Answer.json(status, {"error": error}, headers)
    listing = ""
    if apps is not None:
        items = "".join(
            f'<li><a href="/{html.escape(app)}/">{html.escape(app)}</a></li>' for app in apps
        )
        listing = (
            f"<p>Deployed here:</p><ul>{items}</ul>" if apps else "<p>No app is deployed here.</p>"
        )
    refresh = (
        f'<meta http-equiv="refresh" content="{retry_after}">' if reload and retry_after else ""
    )
    text = _PAGE.format(
        title=html.escape(title), message=html.escape(message), listing=listing, refresh=refresh
    )
    return Answer.text(status, text, "text/html", headers)


def is_navigation(request: Asking) -> bool:
    """Whether a request is a browser loading a page (not a script's fetch, an asset or an API
    client): what may get the "starting" page instead of waiting for a waking app."""
    if request.method != "GET":
        return False
    mode = request.headers.get("Sec-Fetch-Mode", "")
    if mode:
        return mode == "navigate"
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not prefers_json(accept)


def starting(request: Asking, app: str, environment: str) -> Answer:
    """A sleeping app is waking: the browser is asked to come back in a moment (503 with
    Retry-After; the page reloads itself)."""
    message = (
        f"{app} was asleep in {environment} after a while without visitors and is starting "
        "now. This page reloads by itself in a moment."
    )
    return page(request, 503, "starting", f"{app} is starting", message, retry_after=2, reload=True)


def wake_failed(request: Asking, app: str, environment: str, why: str) -> Answer:
    """A sleeping app could not be started again: why, and where its people see more."""
    message = (
        f"{app} was asleep in {environment} and could not be started again: {why}. "
        f"Its logs say more: conveyor logs {app} --env {environment}"
    )
    return page(request, 503, "wake_failed", f"{app} could not start", message, retry_after=30)
