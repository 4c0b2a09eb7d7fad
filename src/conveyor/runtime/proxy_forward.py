"""Forwarding one environment's requests: HTTP streamed both ways, WebSockets relayed frame by
frame, and the pages the proxy answers itself (not deployed, failing, nothing here).

Internal to ``conveyor.runtime.proxy``; runs only on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from collections.abc import Mapping, Sequence

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from conveyor.domain.apps import APP_NAME
from conveyor.runtime.proxy_gate import (
    SESSION_COOKIE,
    VISIT_COOKIE,
    VISITOR_COOKIE,
    Gate,
    cookies_of,
    is_private_cookie,
    new_visitor,
    without_private_cookies,
)
from conveyor.runtime.proxy_pages import page
from conveyor.runtime.proxy_routes import AppRoute, Release, WebSocketSession, affinity_cookie
from conveyor.runtime.proxy_wake import Wakes

#: Headers that describe one connection, not the message (RFC 9110 7.6.1), never forwarded.
#: Proxy-Connection is not standard but old clients still send it.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Set by the proxy itself (from a trusted proxy's values, or from the connection), so a
#: client cannot pass its own through: an app taking X-Forwarded-For for the client's address
#: would believe anything.
_FORWARDED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
    }
)
#: The proxy answers Expect itself; aiohttp negotiates the WebSocket handshake on each hop.
_NOT_FORWARDED = HOP_BY_HOP | _FORWARDED | {"expect"}
#: Methods that change nothing (by HTTP's rules): only these may come from another origin to
#: an app that needs signing in.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WEBSOCKET_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
_NOT_FORWARDED_TO_WEBSOCKET = _NOT_FORWARDED | _WEBSOCKET_HANDSHAKE

#: Methods a client may send twice; only these are retried on a pooled connection the upstream
#: closed while it sat idle (a race every keep-alive pool has).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: Close codes a peer must not send on the wire (RFC 6455 7.4.1), and what is sent instead.
#: aiohttp reports a close frame without a code as 0.
_RESERVED_CLOSE_CODES = {0: 1000, 1005: 1000, 1006: 1011, 1015: 1011}
_ABNORMAL_CLOSURE = 1006
_GOING_AWAY = 1001

#: The largest WebSocket message accepted from a client unless the server says otherwise:
#: what apps exchange over WebSockets (Shiny inputs, Streamlit's messages) is far smaller,
#: and a bigger cap lets one client make the proxy hold that much in memory.
DEFAULT_WEBSOCKET_LIMIT = 8 * 1024 * 1024
_UPSTREAM_WEBSOCKET_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


def wire_close_code(code: int | None) -> int:
    """The close code to relay for ``code`` received on the other side of the proxy."""
    if code is None:
        return _RESERVED_CLOSE_CODES[_ABNORMAL_CLOSURE]
    return _RESERVED_CLOSE_CODES.get(code, code)


class EnvironmentHandler:
    """Handles every request that reaches one environment's listener."""

    def __init__(
        self,
        environment: str,
        routes: Mapping[str, AppRoute],
        session: aiohttp.ClientSession,
        *,
        trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        domain: str | None = None,
        websocket_limit: int = DEFAULT_WEBSOCKET_LIMIT,
        gate: Gate | None = None,
        wakes: Wakes | None = None,
    ) -> None:
        self.environment = environment
        self.routes = routes
        self.session = session
        self.trusted = tuple(trusted)
        self.domain = domain
        self.websocket_limit = websocket_limit
        #: Who may view which app, and page views counted (None: everyone, nothing counted).
        self.gate = gate
        #: Wakes sleeping releases (None: releases never sleep).
        self.wakes = wakes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_path = request.raw_path
        path, _, query = raw_path.partition("?")
        slash = path.find("/", 1)
        app = path[1:slash] if slash > 0 else path[1:]
        own = self._host_app(request)
        if own is not None and app != own:
            # <app>.<domain> is that app's own origin: nothing else is served there.
            if path in ("", "/"):
                return web.Response(status=308, headers={"Location": f"/{own}/"})
            message = f"This address serves {own} only: every app has its own address here."
            return page(request, 404, "not_found", "Not found", message, apps=[own])
        route = self.routes.get(app) if path.startswith("/") else None
        if route is None:
            return self._outside_apps(request, app)
        if slash < 0:
            if route.live is None:
                return self._not_deployed(request, app)
            location = f"{route.prefix}/?{query}" if query else f"{route.prefix}/"
            return web.Response(status=308, headers={"Location": location})
        choice = route.choose(affinity_cookie(request.headers.get("Cookie"), route.cookie_name))
        if choice is None:
            return self._not_deployed(request, app)
        release, index, new_affinity = choice
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        visitor_cookies: list[str] = []
        private = False
        if self.gate is not None:
            refused, visitor_cookies, private = await self._gate(request, app, raw_path, websocket)
            if refused is not None:
                return refused
        while release.asleep and self.wakes is not None:
            # Only a visitor who may view the app wakes it.
            held = await self.wakes.hold(request, release, websocket)
            live = route.live
            if live is not None and live is not release:
                # Another release took its place meanwhile (a deploy, a rollback): it answers.
                release, index, new_affinity = live, live.next_upstream(), True
                continue
            if held is not None:
                return held
        if release.strip_prefix:
            upstream_path = f"{path[slash:]}?{query}" if query else path[slash:]
        else:
            upstream_path = raw_path
        if websocket:
            return await self._websocket(request, route, release, index, upstream_path)
        release.request_started()
        try:
            return await self._http(
                request,
                route,
                release,
                index,
                new_affinity,
                upstream_path,
                visitor_cookies,
                private=private,
            )
        finally:
            release.request_finished()

    async def _gate(
        self, request: web.BaseRequest, app: str, raw_path: str, websocket: bool
    ) -> tuple[web.StreamResponse | None, list[str], bool]:
        """Ask whether the visitor may view ``app``: a refusal to answer with (a sign-in
        redirect, or a 403 page), else None, the visitor cookies to set, and whether the app
        is private to signed-in viewers; a page view is counted."""
        assert self.gate is not None
        cookies = cookies_of(request.headers.get("Cookie", ""))
        url = f"{request.scheme}://{request.host}{raw_path}"
        decision = await self.gate.decide(self.environment, app, cookies.get(SESSION_COOKIE), url)
        if not decision.allowed:
            if decision.sign_in and not websocket and request.method in ("GET", "HEAD"):
                return web.Response(status=303, headers={"Location": decision.sign_in}), [], True
            message = decision.reason or f"You may not view {app} in {self.environment}."
            return page(request, 403, "forbidden", "Not allowed", message), [], True
        if decision.private and (websocket or request.method not in _SAFE_METHODS):
            # The browser sends the session with requests from any page of this host (any
            # port: another app's page too): what changes things, or opens a socket, must come
            # from the app's own origin.
            origin = request.headers.get("Origin")
            if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
                message = f"{app} accepts this only from its own pages, not from {origin}."
                return page(request, 403, "forbidden", "Not allowed", message), [], True
        set_cookies: list[str] = []
        page_view = (
            request.method == "GET"
            and not websocket
            and "text/html" in request.headers.get("Accept", "")
        )
        if page_view:
            # A browser without the visitor cookies yet (or one that never keeps them) is
            # counted by its address, so a client that drops cookies adds no row per request.
            address = f"address:{request.remote}"
            visitor, visit = cookies.get(VISITOR_COOKIE), cookies.get(VISIT_COOKIE)
            if not visitor:
                set_cookies.append(
                    f"{VISITOR_COOKIE}={new_visitor()}; Path=/; Max-Age=31536000; HttpOnly; "
                    "SameSite=Lax"
                )
            if not visit:
                set_cookies.append(
                    f"{VISIT_COOKIE}={new_visitor()}; Path=/; HttpOnly; SameSite=Lax"
                )
            viewer = decision.user or (f"visitor:{visitor}" if visitor else address)
            self.gate.viewed(self.environment, app, viewer, visit or address)
        return None, set_cookies, decision.private

    # --- HTTP ----------------------------------------------------------------------------

    def _host_app(self, request: web.BaseRequest) -> str | None:
        """The app whose own host the request is for (``<app>.<domain>``), or None for a
        host outside the domain. Any other host under the domain (``x.app.<domain>``) is an
        app that does not exist (``-``): nothing is served there."""
        if self.domain is None:
            return None
        host = (request.host or "").rsplit(":", 1)[0].lower().rstrip(".")
        suffix = "." + self.domain
        if host == self.domain:
            return "-"
        if not host.endswith(suffix):
            return None
        name = host[: -len(suffix)]
        return name if APP_NAME.match(name) else "-"

    def _trusted(self, request: web.BaseRequest) -> bool:
        """Whether the request comes from a proxy whose X-Forwarded-* headers are kept."""
        if not self.trusted or not request.remote:
            return False
        try:
            address = ipaddress.ip_address(request.remote)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    async def _http(
        self,
        request: web.BaseRequest,
        route: AppRoute,
        release: Release,
        index: int,
        new_affinity: bool,
        upstream_path: str,
        set_cookies: Sequence[str] = (),
        *,
        private: bool = False,
    ) -> web.StreamResponse:
        headers = _upstream_headers(
            request, route.prefix, _NOT_FORWARDED, trusted=self._trusted(request)
        )
        if request.version >= aiohttp.HttpVersion11 and (
            request.headers.get("Expect", "").lower() == "100-continue"
        ):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        body = request.content if request.body_exists else None
        upstream, index, new_affinity = await self._send(
            request.method, release, index, new_affinity, upstream_path, headers, body
        )
        if upstream is None:
            return self._unavailable(request, route.app)
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=_without_hop_by_hop(upstream.headers, HOP_BY_HOP),
        )
        _without_conveyor_cookies(response.headers)
        if private:
            _private_to_the_viewer(response.headers)
        if new_affinity:
            response.headers.add("Set-Cookie", route.set_cookie(release, index))
        for cookie in set_cookies:
            response.headers.add("Set-Cookie", cookie)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, ConnectionError):
            # Headers are out: the only honest signal left is a broken connection, so the
            # client does not take a truncated body for a whole one.
            upstream.close()
            if request.transport is not None:
                request.transport.close()
        finally:
            upstream.release()
        return response

    async def _send(
        self,
        method: str,
        release: Release,
        index: int,
        new_affinity: bool,
        upstream_path: str,
        headers: CIMultiDict[str],
        body: aiohttp.StreamReader | None,
    ) -> tuple[aiohttp.ClientResponse | None, int, bool]:
        """Send the request to worker ``index``, or to another worker of the release when that
        one refuses connections. None when no worker could be reached."""
        tried = 0
        retried_idle_connection = False
        while True:
            url = URL(release.upstreams[index] + upstream_path, encoded=True)
            try:
                upstream = await self.session.request(
                    method, url, headers=headers, data=body, allow_redirects=False
                )
                return upstream, index, new_affinity
            except aiohttp.ClientConnectorError:
                # Nothing was sent yet, so another worker can take it, body included.
                tried += 1
                if tried >= len(release.upstreams):
                    return None, index, new_affinity
                index = (index + 1) % len(release.upstreams)
                new_affinity = True
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if retried_idle_connection or body is not None or method not in _IDEMPOTENT:
                    return None, index, new_affinity
                retried_idle_connection = True
            except (aiohttp.ClientError, TimeoutError):
                return None, index, new_affinity

    # --- WebSockets ----------------------------------------------------------------------

    async def _websocket(
        self,
        request: web.BaseRequest,
        route: AppRoute,
        release: Release,
        index: int,
        upstream_path: str,
    ) -> web.StreamResponse:
        # The handshake counts as an HTTP request, so a drain waits for it; once open, the
        # session counts as a WebSocket, which the drain closes after its grace period.
        release.request_started()
        handshaking = True
        try:
            headers = _upstream_headers(
                request,
                route.prefix,
                _NOT_FORWARDED_TO_WEBSOCKET,
                trusted=self._trusted(request),
            )
            url = URL("ws" + release.upstreams[index][4:] + upstream_path, encoded=True)
            try:
                upstream = await self.session.ws_connect(
                    url,
                    headers=headers,
                    protocols=_requested_protocols(request),
                    compress=0,
                    max_msg_size=0,
                    timeout=_UPSTREAM_WEBSOCKET_TIMEOUT,
                )
            except aiohttp.WSServerHandshakeError as refused:
                if refused.status >= 400:
                    return web.Response(status=refused.status, text=refused.message)
                return self._unavailable(request, route.app)
            except (aiohttp.ClientError, TimeoutError):
                return self._unavailable(request, route.app)
            try:
                client = web.WebSocketResponse(
                    protocols=(upstream.protocol,) if upstream.protocol else (),
                    max_msg_size=self.websocket_limit,
                )
                await client.prepare(request)
                session = _Relay(client, upstream, release.websockets)
                handshaking = False
                release.request_finished()
                relay = asyncio.ensure_future(session.run())
                if release.forgotten:
                    await session.close(1012, b"service restart")
                try:
                    await asyncio.shield(relay)
                except asyncio.CancelledError:
                    # The client's connection closed under the handler: let the relay finish
                    # telling the upstream (its close has its own timeout).
                    await relay
                    raise
                return client
            finally:
                await upstream.close(code=_GOING_AWAY)
        finally:
            if handshaking:
                release.request_finished()
            else:
                release.touch()  # idle time counts from the session's end

    # --- the proxy's own pages -------------------------------------------------------------

    def _not_deployed(self, request: web.BaseRequest, app: str) -> web.Response:
        message = f"{app} is not deployed in {self.environment}."
        return page(request, 503, "not_deployed", f"{app} is not deployed", message)

    def _unavailable(self, request: web.BaseRequest, app: str) -> web.Response:
        message = (
            f"{app} is failing in {self.environment}: Conveyor could not reach it. "
            "Try again in a moment; if it persists, look at the release's logs."
        )
        return page(request, 502, "app_unavailable", f"{app} is unavailable", message)

    def _outside_apps(self, request: web.BaseRequest, app: str) -> web.Response:
        if app and APP_NAME.match(app):
            return self._not_deployed(request, app)
        deployed = sorted(name for name, route in self.routes.items() if route.live)
        message = f"Nothing is served at this address in {self.environment}."
        return page(request, 404, "not_found", "Not found", message, apps=deployed)


class _Relay:
    """One WebSocket session: frames relayed both ways until either side closes."""

    __slots__ = ("client", "upstream", "_sessions", "_done")

    def __init__(
        self,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        sessions: set[WebSocketSession],
    ) -> None:
        self.client = client
        self.upstream = upstream
        self._sessions = sessions
        self._done = asyncio.Event()
        sessions.add(self)

    async def run(self) -> None:
        """Relay until both sides are closed; the session then leaves its release's count."""
        try:
            await asyncio.gather(self._from_client(), self._from_upstream())
        finally:
            self._sessions.discard(self)
            self._done.set()

    async def close(self, code: int, reason: bytes) -> None:
        # Closing the client side ends _from_client, which then closes the upstream side.
        await self.client.close(code=code, message=reason)
        await self._done.wait()

    async def _from_client(self) -> None:
        client, upstream = self.client, self.upstream
        code, reason = _ABNORMAL_CLOSURE, b""
        try:
            while True:
                message = await client.receive()
                if message.type is WSMsgType.TEXT:
                    await upstream.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await upstream.send_bytes(message.data)
                elif message.type is WSMsgType.CLOSE:
                    code, reason = message.data, (message.extra or "").encode()
                    break
                elif message.type is WSMsgType.CLOSING:
                    # The proxy closed the client side itself (a drain, or stopping).
                    code = client.close_code or _ABNORMAL_CLOSURE
                    break
                else:
                    break
        except (aiohttp.ClientError, ConnectionError):
            pass
        await upstream.close(code=wire_close_code(code), message=reason)

    async def _from_upstream(self) -> None:
        client, upstream = self.client, self.upstream
        code, reason = _ABNORMAL_CLOSURE, b""
        try:
            while True:
                message = await upstream.receive()
                if message.type is WSMsgType.TEXT:
                    await client.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await client.send_bytes(message.data)
                elif message.type is WSMsgType.CLOSE:
                    code, reason = message.data, (message.extra or "").encode()
                    break
                else:
                    # No close frame came: the upstream went away abnormally (1006).
                    break
        except (aiohttp.ClientError, ConnectionError):
            pass
        await client.close(code=wire_close_code(code), message=reason)


# --- headers and pages ---------------------------------------------------------------------


def _without_hop_by_hop(headers: CIMultiDictProxy[str], skip: frozenset[str]) -> CIMultiDict[str]:
    """A copy of ``headers`` without ``skip`` and without the headers their Connection header
    declares hop-by-hop."""
    listed = headers.getall("Connection", ())
    if listed:
        skip = skip | {token.strip().lower() for value in listed for token in value.split(",")}
    copy: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in skip:
            copy.add(name, value)
    return copy


def _upstream_headers(
    request: web.BaseRequest, prefix: str, skip: frozenset[str], *, trusted: bool = False
) -> CIMultiDict[str]:
    """The request's headers as the app gets them: end-to-end ones, plus X-Forwarded-*. The
    client's own forwarding headers are kept only from a ``trusted`` proxy in front; from
    anyone else they are replaced by what the connection says."""
    incoming = request.headers
    headers = _without_hop_by_hop(incoming, skip)
    for name in list(headers):
        # Servers read X_Forwarded_For as X-Forwarded-For (WSGI's HTTP_X_FORWARDED_FOR):
        # every spelling of a forwarding header is the proxy's to set.
        if _forwarding(name):
            headers.popall(name, None)
    if "Cookie" in headers:
        # The console's session and the proxy's own cookies never reach an app.
        kept = without_private_cookies("; ".join(headers.popall("Cookie")))
        if kept:
            headers["Cookie"] = kept
    forwarded_for = ", ".join(incoming.getall("X-Forwarded-For", ())) if trusted else ""
    remote = request.remote
    if remote:
        forwarded_for = f"{forwarded_for}, {remote}" if forwarded_for else remote
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    proto = incoming.get("X-Forwarded-Proto") if trusted else None
    host = incoming.get("X-Forwarded-Host") if trusted else None
    headers["X-Forwarded-Proto"] = proto or request.scheme
    headers["X-Forwarded-Host"] = host or request.host
    headers["X-Forwarded-Prefix"] = prefix
    return headers


def _without_conveyor_cookies(headers: CIMultiDict[str]) -> None:
    """Drop an app's ``Set-Cookie`` headers for Conveyor's own cookie names."""
    kept = [value for value in headers.getall("Set-Cookie", ()) if not is_private_cookie(value)]
    headers.popall("Set-Cookie", None)
    for value in kept:
        headers.add("Set-Cookie", value)


def _private_to_the_viewer(headers: CIMultiDict[str]) -> None:
    """An app that needs signing in answers each viewer their own pages: no shared cache
    may keep one for the next visitor."""
    kept = headers.get("Cache-Control", "")
    if "no-store" not in kept.lower():
        headers["Cache-Control"] = "private, no-cache"
    vary = headers.get("Vary", "")
    if "cookie" not in vary.lower():
        headers["Vary"] = f"{vary}, Cookie" if vary else "Cookie"


def _forwarding(name: str) -> bool:
    """Whether a header name, read the way servers read it (``_`` as ``-``), is one of the
    headers that say who the client is."""
    normal = name.lower().replace("_", "-")
    return normal in _FORWARDED or normal.startswith("x-forwarded-")


def _requested_protocols(request: web.BaseRequest) -> list[str]:
    return [
        protocol.strip()
        for value in request.headers.getall("Sec-WebSocket-Protocol", ())
        for protocol in value.split(",")
        if protocol.strip()
    ]
