"""Forwarding one environment's requests: routing to the app's release (affinity, draining,
the viewer gate, waking a sleeping release), then HTTP streamed both ways over a pooled
keep-alive connection, or a WebSocket carried as a tunnel; and the pages the proxy answers
itself (not deployed, failing, nothing here).

Internal to ``conveyor.runtime.proxy``; runs only on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from collections.abc import Mapping, Sequence

from conveyor.domain.apps import APP_NAME
from conveyor.runtime.proxy_gate import (
    SESSION_COOKIE,
    VISIT_COOKIE,
    VISITOR_COOKIE,
    Gate,
    cookies_of,
    new_visitor,
)
from conveyor.runtime.proxy_http import LAST_CHUNK, Answer, chunk, response_head, switching_head
from conveyor.runtime.proxy_http import upstream_head as make_upstream_head
from conveyor.runtime.proxy_pages import page
from conveyor.runtime.proxy_routes import AppRoute, Release, affinity_cookie
from conveyor.runtime.proxy_server import Request
from conveyor.runtime.proxy_tunnel import Tunnel, wire_close_code
from conveyor.runtime.proxy_upstream import Pool, UpstreamConnection, UpstreamGone
from conveyor.runtime.proxy_wake import Wakes

__all__ = ["DEFAULT_WEBSOCKET_LIMIT", "EnvironmentHandler", "wire_close_code"]

#: Methods that change nothing (by HTTP's rules): only these may come from another origin to
#: an app that needs signing in.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Methods a client may send twice; only these are retried on a pooled connection the upstream
#: closed while it sat idle (a race every keep-alive pool has).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: The largest WebSocket message accepted from a client unless the server says otherwise:
#: what apps exchange over WebSockets (Shiny inputs, Streamlit's messages) is far smaller,
#: and a bigger cap lets one client make the proxy hold that much in memory.
DEFAULT_WEBSOCKET_LIMIT = 8 * 1024 * 1024
_SERVICE_RESTART = 1012
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class EnvironmentHandler:
    """Handles every request that reaches one environment's listener."""

    def __init__(
        self,
        environment: str,
        routes: Mapping[str, AppRoute],
        pool: Pool,
        *,
        trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        domain: str | None = None,
        websocket_limit: int = DEFAULT_WEBSOCKET_LIMIT,
        gate: Gate | None = None,
        wakes: Wakes | None = None,
    ) -> None:
        self.environment = environment
        self.routes = routes
        self.pool = pool
        self.trusted = tuple(trusted)
        self.domain = domain
        self.websocket_limit = websocket_limit
        #: Who may view which app, and page views counted (None: everyone, nothing counted).
        self.gate = gate
        #: Wakes sleeping releases (None: releases never sleep).
        self.wakes = wakes

    async def __call__(self, request: Request) -> None:
        answer = await self._route(request)
        if answer is not None:
            request.answer(answer)

    async def _route(self, request: Request) -> Answer | None:
        """Forward ``request``, or the answer the proxy gives itself."""
        raw_path = request.raw_path
        path, _, query = raw_path.partition("?")
        slash = path.find("/", 1)
        app = path[1:slash] if slash > 0 else path[1:]
        own = self._host_app(request)
        if own is not None and app != own:
            # <app>.<domain> is that app's own origin: nothing else is served there.
            if path in ("", "/"):
                return Answer.redirect(308, f"/{own}/")
            message = f"This address serves {own} only: every app has its own address here."
            return page(request, 404, "not_found", "Not found", message, apps=[own])
        route = self.routes.get(app) if path.startswith("/") else None
        if route is None:
            return self._outside_apps(request, app)
        if slash < 0:
            if route.live is None:
                return self._not_deployed(request, app)
            location = f"{route.prefix}/?{query}" if query else f"{route.prefix}/"
            return Answer.redirect(308, location)
        choice = route.choose(affinity_cookie(request.headers.get("Cookie"), route.cookie_name))
        if choice is None:
            return self._not_deployed(request, app)
        release, index, new_affinity = choice
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if websocket and (request.body is not None or request.upgrade is None):
            # A handshake has no body, and says Connection: Upgrade (without it the parser
            # does not hand the connection over, and a pipelined request would wait forever).
            request.keep_alive = False
            message = "A WebSocket handshake has no body and asks for Connection: Upgrade."
            return page(request, 400, "bad_request", "Bad request", message)
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
        self, request: Request, app: str, raw_path: str, websocket: bool
    ) -> tuple[Answer | None, list[str], bool]:
        """Ask whether the visitor may view ``app``: a refusal to answer with (a sign-in
        redirect, or a 403 page), else None, the visitor cookies to set, and whether the app
        is private to signed-in viewers; a page view is counted."""
        assert self.gate is not None
        cookies = cookies_of(request.headers.get("Cookie", ""))
        url = f"{request.scheme}://{request.host}{raw_path}"
        decision = await self.gate.decide(self.environment, app, cookies.get(SESSION_COOKIE), url)
        if not decision.allowed:
            if decision.sign_in and not websocket and request.method in ("GET", "HEAD"):
                return Answer.redirect(303, decision.sign_in), [], True
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

    def _host_app(self, request: Request) -> str | None:
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

    def _trusted(self, request: Request) -> bool:
        """Whether the request comes from a proxy whose X-Forwarded-* headers are kept."""
        if not self.trusted or not request.remote:
            return False
        try:
            address = ipaddress.ip_address(request.remote)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def _head_for(
        self,
        request: Request,
        route: AppRoute,
        route_upstream: str,
        upstream_path: str,
        *,
        websocket: bool = False,
    ) -> bytes:
        body = request.body
        if body is None:
            length = 0 if request.declared_empty else None
        else:
            length = body.length
        return make_upstream_head(
            request.method,
            upstream_path,
            request.headers,
            remote=request.remote,
            scheme=request.scheme,
            host=request.host,
            prefix=route.prefix,
            trusted=self._trusted(request),
            length=length,
            chunked=body is not None and body.chunked,
            websocket=websocket,
            upstream_host=self.pool.address(route_upstream)[1],
        )

    async def _http(
        self,
        request: Request,
        route: AppRoute,
        release: Release,
        index: int,
        new_affinity: bool,
        upstream_path: str,
        set_cookies: Sequence[str] = (),
        *,
        private: bool = False,
    ) -> Answer | None:
        if request.version == "1.1" and (
            request.headers.get("Expect", "").lower() == "100-continue"
        ):
            request.conn.write(_CONTINUE)
        head = self._head_for(request, route, release.upstreams[index], upstream_path)
        body = request.body
        tried = 0
        retried_idle_connection = False
        while True:
            try:
                if index in release.down:
                    raise ConnectionRefusedError  # out of the route: as if it refused
                conn, pooled = await self.pool.connect(release.upstreams[index])
            except OSError:
                # Nothing was sent yet, so another worker can take it, body included.
                tried += 1
                if tried >= len(release.upstreams):
                    return self._unavailable(request, route.app)
                index = (index + 1) % len(release.upstreams)
                new_affinity = True
                continue
            except TimeoutError:
                return self._unavailable(request, route.app)
            try:
                conn.begin(head, head_request=request.method == "HEAD")
                if body is not None:
                    conn.peer = request.conn
                    body.attach(conn)
                await conn.head()
            except UpstreamGone as gone:
                conn.close()
                if (
                    gone.answered
                    or not pooled
                    or retried_idle_connection
                    or body is not None
                    or request.method not in _IDEMPOTENT
                ):
                    return self._unavailable(request, route.app)
                retried_idle_connection = True
                continue
            except BaseException:
                conn.close()
                raise
            break
        if conn.status == 101:
            # Switching protocols on a request that asked for none: nothing to relay.
            conn.close()
            return self._unavailable(request, route.app)
        cookies = [route.set_cookie(release, index)] if new_affinity else []
        cookies.extend(set_cookies)
        await self._respond(request, conn, cookies, private)
        return None

    async def _respond(
        self, request: Request, conn: UpstreamConnection, set_cookies: list[str], private: bool
    ) -> None:
        """Send the client the app's response: the head with the first body bytes in one
        write, then the rest of the body as it comes."""
        client = request.conn
        status = conn.status
        bodiless = request.method == "HEAD" or status in (204, 304)
        # The framing is the proxy's own, from what it parsed (a Connection header of the
        # app's cannot strip it): the body's length, else chunked, else the connection's end.
        framing = b""
        chunked = False
        if bodiless:
            if conn.length is not None and status != 204:
                framing = b"Content-Length: %d\r\n" % conn.length  # what a GET would get
        elif conn.content_length and conn.length is not None:
            framing = b"Content-Length: %d\r\n" % conn.length
        elif request.version == "1.1":
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
        else:
            request.keep_alive = False  # an HTTP/1.0 client reads to the connection's end
        if not request.keep_alive:
            framing += b"Connection: close\r\n"
        head = response_head(
            status,
            conn.reason,
            conn.items,
            private=private,
            set_cookies=set_cookies,
            framing=framing,
        )
        request.head_sent = True
        ok = False
        try:
            if bodiless:
                client.write(head)
                ok = conn.complete
                return
            data = conn.take_pending()
            if chunked:
                head += chunk(data) if data else b""
                if conn.complete:
                    head += LAST_CHUNK
            else:
                head += data
            client.write(head)
            if not conn.complete and not conn.broken:
                conn.stream_to(client, chunked=chunked)
                assert conn.done is not None
                await conn.done
            if conn.broken:
                # Headers are out: the only honest signal left is a broken connection, so the
                # client does not take a truncated body for a whole one.
                client.abort()
                return
            ok = True
        finally:
            conn.unlink(client)
            body = request.body
            if ok and (body is None or body.complete):
                self.pool.release(conn)
            else:
                conn.close()

    # --- WebSockets ----------------------------------------------------------------------

    async def _websocket(
        self,
        request: Request,
        route: AppRoute,
        release: Release,
        index: int,
        upstream_path: str,
    ) -> Answer | None:
        # The handshake counts as an HTTP request, so a drain waits for it; once open, the
        # session counts as a WebSocket, which the drain closes after its grace period.
        release.request_started()
        handshaking = True
        try:
            try:
                index = release.up_from(index)
                conn, _ = await self.pool.connect(release.upstreams[index])
            except (OSError, TimeoutError):
                return self._unavailable(request, route.app)
            try:
                conn.begin(
                    self._head_for(
                        request, route, release.upstreams[index], upstream_path, websocket=True
                    ),
                    head_request=False,
                )
                await conn.head()
            except UpstreamGone:
                conn.close()
                return self._unavailable(request, route.app)
            except BaseException:
                conn.close()
                raise
            if conn.status != 101:
                if conn.status < 400:
                    conn.close()
                    return self._unavailable(request, route.app)
                # The app refused the handshake: the client gets its answer.
                await self._respond(request, conn, [], False)
                return None
            tunnel = Tunnel(
                request.conn, conn, self.websocket_limit, release.websockets, release.touch
            )
            request.head_sent = True
            request.conn.write(switching_head(conn.items))
            handshaking = False
            release.request_finished()
            tunnel.start(request.upgrade or b"", conn.upgrade or b"")
            if release.forgotten:
                await tunnel.close(_SERVICE_RESTART, b"service restart")
            await asyncio.shield(tunnel.done)
            return None
        finally:
            if handshaking:
                release.request_finished()

    # --- the proxy's own pages -------------------------------------------------------------

    def _not_deployed(self, request: Request, app: str) -> Answer:
        message = f"{app} is not deployed in {self.environment}."
        return page(request, 503, "not_deployed", f"{app} is not deployed", message)

    def _unavailable(self, request: Request, app: str) -> Answer:
        message = (
            f"{app} is failing in {self.environment}: Conveyor could not reach it. "
            "Try again in a moment; if it persists, look at the release's logs."
        )
        return page(request, 502, "app_unavailable", f"{app} is unavailable", message)

    def _outside_apps(self, request: Request, app: str) -> Answer:
        if app and APP_NAME.match(app):
            return self._not_deployed(request, app)
        deployed = sorted(name for name, route in self.routes.items() if route.live)
        message = f"Nothing is served at this address in {self.environment}."
        return page(request, 404, "not_found", "Not found", message, apps=deployed)
