"""Conveyor's reverse proxy: one long-lived listener per environment, every app at `/<app>/`.

A deploy never restarts a listener. ``set_route`` swaps an app's upstreams in memory in one step;
the release routed before becomes *draining*: clients holding its affinity cookie (a page loaded
from it, with its scripts and session) keep reaching it, everyone else gets the new release.
``drain`` then waits for its in-flight requests, gives its WebSocket sessions a grace period,
closes them with 1012 (service restart) and forgets the release, after which its workers can be
stopped without failing a request.

The proxy runs its own event loop (uvloop's: libuv under asyncio's interface, measured in
docs/performance.md) in one background thread, so that synchronous
services can drive it. Every public method runs its work on that loop and waits for it: route
changes are serialised with request handling, which is what makes a swap atomic without locks.
HTTP/1.1 is parsed with httptools on asyncio Protocols (``proxy_server`` for clients,
``proxy_upstream`` for a pool of keep-alive connections to the workers); request and response
bodies are streamed both ways with flow control; WebSockets are carried as a tunnel that reads
frame headers only (``proxy_tunnel``). Routing, the gate and waking are ``proxy_forward``'s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import uvloop

from conveyor.domain.apps import APP_NAME
from conveyor.errors import Conflict, InvalidInput, RuntimeFailure
from conveyor.runtime.proxy_forward import DEFAULT_WEBSOCKET_LIMIT, EnvironmentHandler
from conveyor.runtime.proxy_gate import Gate
from conveyor.runtime.proxy_routes import AppRoute, Release
from conveyor.runtime.proxy_server import WRITE_STALL_TIMEOUT, Listener
from conveyor.runtime.proxy_upstream import Pool
from conveyor.runtime.proxy_wake import Waker, Wakes

T = TypeVar("T")

#: How long stop() lets requests still running finish before they are cancelled.
_SHUTDOWN_TIMEOUT = 2.0
_SERVICE_RESTART = 1012
_GOING_AWAY = 1001


class Proxy:
    """The reverse proxy in front of every environment's apps; synchronous and thread-safe.

    ``trusted_proxies``: the addresses (networks) of proxies in front of Conveyor whose
    ``X-Forwarded-*`` headers are kept; from anyone else they are replaced. ``websocket_limit``:
    the largest WebSocket message accepted from a client, in bytes."""

    def __init__(
        self,
        *,
        trusted_proxies: Sequence[str] = (),
        websocket_limit: int = DEFAULT_WEBSOCKET_LIMIT,
        gate: Gate | None = None,
        write_stall: float = WRITE_STALL_TIMEOUT,
    ) -> None:
        try:
            self.trusted = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        except ValueError as exc:
            raise InvalidInput(f"a trusted proxy is an address or network: {exc}") from None
        self.websocket_limit = websocket_limit
        self.gate = gate
        #: Seconds a client may take nothing of what it is sent before it is cut off.
        self.write_stall = write_stall
        self._handlers: dict[str, EnvironmentHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Pool | None = None
        self._listeners: dict[str, Listener] = {}
        #: environment -> app -> route; listeners read the same dicts.
        self._routes: dict[str, dict[str, AppRoute]] = {}
        #: Every release routed, draining, or forgotten with requests still running.
        self._releases: dict[int, Release] = {}
        self._lifecycle = threading.Lock()
        self._wakes = Wakes()

    @property
    def waker(self) -> Waker | None:
        """What starts a sleeping release again (the runtime's): called in a thread with the
        release id, it returns the workers' new base URLs."""
        return self._wakes.waker

    @waker.setter
    def waker(self, waker: Waker | None) -> None:
        self._wakes.waker = waker

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the proxy's event loop thread (and its upstream connection pool)."""
        with self._lifecycle:
            if self._loop is not None:
                raise Conflict("the proxy is already started")
            loop = uvloop.new_event_loop()
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name="conveyor-proxy", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        self._call(self._open_pool)

    def stop(self) -> None:
        """Close every listener and WebSocket session, the connection pool and the loop thread.
        Stopping a proxy that is not running is a no-op."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                self._call(self._shutdown)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                self._loop = self._thread = None

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())

    async def _open_pool(self) -> None:
        self._pool = Pool()

    async def _shutdown(self) -> None:
        sessions = [s for r in self._releases.values() for s in list(r.websockets)]
        await asyncio.gather(
            *(s.close(_GOING_AWAY, b"proxy stopping") for s in sessions), return_exceptions=True
        )
        for listener in self._listeners.values():
            await listener.close(_SHUTDOWN_TIMEOUT)
        self._listeners.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._wakes.close()

    # --- listeners and routes --------------------------------------------------------------

    def add_listener(
        self,
        environment: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        domain: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        """Listen for ``environment``'s apps on ``host:port`` (0: any free port); returns the
        bound port. One listener per environment, kept for the proxy's whole life. With
        ``domain``, every app also answers at ``<app>.<domain>``, and only there (its own
        origin); ``ssl_context`` serves it over HTTPS."""
        return self._call(self._add_listener, environment, host, port, domain, ssl_context)

    def set_domain(self, environment: str, domain: str | None) -> None:
        """Change the domain of an environment's host-based routing (None: ports only)."""
        handler = self._handlers.get(environment)
        if handler is not None:
            handler.domain = domain

    async def _add_listener(
        self,
        environment: str,
        host: str,
        port: int,
        domain: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> int:
        if environment in self._listeners:
            raise Conflict(f"environment {environment} already has a listener")
        assert self._pool is not None
        routes = self._routes.setdefault(environment, {})
        handler = EnvironmentHandler(
            environment,
            routes,
            self._pool,
            trusted=self.trusted,
            domain=domain,
            websocket_limit=self.websocket_limit,
            gate=self.gate,
            wakes=self._wakes,
        )
        self._handlers[environment] = handler
        listener = Listener(handler, tls=ssl_context is not None, write_stall=self.write_stall)
        try:
            port = await listener.start(host, port, ssl_context)
        except OSError as error:
            raise RuntimeFailure(
                f"cannot listen on {host}:{port} for environment {environment}: {error}"
            ) from error
        self._listeners[environment] = listener
        return port

    def set_route(
        self,
        environment: str,
        app: str,
        release_id: int,
        upstreams: list[str],
        *,
        strip_prefix: bool = False,
        asleep: bool = False,
    ) -> None:
        """Send ``app``'s traffic in ``environment`` to ``release_id``'s workers at
        ``upstreams`` (base URLs such as ``http://127.0.0.1:41234``), in one atomic swap.

        The release routed before starts draining: requests carrying its affinity cookie still
        reach it until ``drain`` forgets it. ``strip_prefix``: the workers serve at `/` and get
        paths without `/<app>`; otherwise they get the full original path. ``asleep``: its
        workers are not running; the first request wakes it through the ``waker``."""
        if not APP_NAME.match(app):
            raise InvalidInput(f"invalid app name {app!r}")
        if not upstreams:
            raise InvalidInput(f"release {release_id} of {app} has no upstream to route to")
        for upstream in upstreams:
            if not upstream.startswith(("http://", "https://")) or upstream.endswith("/"):
                raise InvalidInput(
                    f"upstream {upstream!r} must be a base URL like http://127.0.0.1:8000"
                )
        self._call(
            self._set_route, environment, app, release_id, tuple(upstreams), strip_prefix, asleep
        )

    async def _set_route(
        self,
        environment: str,
        app: str,
        release_id: int,
        upstreams: tuple[str, ...],
        strip_prefix: bool,
        asleep: bool = False,
    ) -> None:
        release = self._releases.get(release_id)
        if release is not None and (release.environment, release.app) != (environment, app):
            raise Conflict(
                f"release {release_id} is routed for {release.app} in {release.environment}, "
                f"not {app} in {environment}"
            )
        routes = self._routes.setdefault(environment, {})
        route = routes.get(app)
        if route is None:
            route = routes[app] = AppRoute(app)
        if release is None:
            release = self._releases[release_id] = Release(
                release_id, environment, app, upstreams, strip_prefix
            )
        else:
            release.upstreams, release.strip_prefix = upstreams, strip_prefix
            release.forgotten = False
            route.draining.pop(release_id, None)
        release.asleep = asleep
        previous, route.live = route.live, release
        if previous is not None and previous is not release:
            route.draining[previous.release_id] = previous

    def remove_route(self, environment: str, app: str) -> None:
        """Stop routing ``app`` in ``environment``: new requests get the not-deployed page; the
        release routed until now drains like one replaced by ``set_route``."""
        self._call(self._remove_route, environment, app)

    async def _remove_route(self, environment: str, app: str) -> None:
        route = self._routes.get(environment, {}).get(app)
        if route is None or route.live is None:
            return
        route.draining[route.live.release_id] = route.live
        route.live = None

    def drain(
        self,
        environment: str,
        app: str,
        release_id: int,
        *,
        timeout: float = 30.0,
        websocket_grace: float = 5.0,
    ) -> None:
        """Retire a release that is no longer routed, so its workers can be stopped.

        Blocks until its in-flight HTTP requests have finished (at most ``timeout`` seconds),
        then, after ``websocket_grace`` seconds, closes its WebSocket sessions with 1012
        (service restart) and forgets it. A release the proxy does not know is a no-op; the
        routed one is a Conflict."""
        self._call(self._drain, environment, app, release_id, timeout, websocket_grace)

    async def _drain(
        self, environment: str, app: str, release_id: int, timeout: float, grace: float
    ) -> None:
        route = self._routes.get(environment, {}).get(app)
        if route is None:
            return
        if route.live is not None and route.live.release_id == release_id:
            raise Conflict(
                f"release {release_id} of {app} is routed in {environment}; route another "
                "release (or remove the route) before draining it"
            )
        release = route.draining.get(release_id)
        if release is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await release.wait_idle(deadline)
        if release.websockets and grace > 0:
            await asyncio.sleep(grace)
        if route.live is release or release.forgotten:
            return  # routed again, or drained by a concurrent call, meanwhile
        route.draining.pop(release_id, None)
        release.forgotten = True
        if route.unused and self._routes[environment].get(app) is route:
            del self._routes[environment][app]
        await asyncio.gather(
            *(s.close(_SERVICE_RESTART, b"service restart") for s in list(release.websockets)),
            return_exceptions=True,
        )
        # Cookie holders may have reached it during the grace period; nothing new can now.
        await release.wait_idle(deadline)
        self._forget_idle_releases()

    def _forget_idle_releases(self) -> None:
        for release_id, release in list(self._releases.items()):
            if release.forgotten and release.inflight == 0:
                del self._releases[release_id]

    # --- sleep ---------------------------------------------------------------------------

    def sleep_if_idle(self, environment: str, app: str, release_id: int, idle: float) -> bool:
        """Mark ``app``'s routed release asleep when it has had no request or WebSocket for
        ``idle`` seconds (True): from now on a request wakes it through the ``waker`` instead
        of reaching its workers, which the caller then stops. False (nothing changes) when it
        is busy, recently used, already asleep, or not the routed release."""
        return self._call(self._sleep_if_idle, environment, app, release_id, idle)

    async def _sleep_if_idle(
        self, environment: str, app: str, release_id: int, idle: float
    ) -> bool:
        route = self._routes.get(environment, {}).get(app)
        release = route.live if route is not None else None
        if release is None or release.release_id != release_id or release.asleep:
            return False
        if release.waking is not None:
            return False
        idle_for = release.idle_for()
        if idle_for is None or idle_for < idle:
            return False
        release.asleep = True
        return True

    def set_worker_down(self, release_id: int, index: int, down: bool) -> None:
        """Take worker ``index`` of the release out of the route (``down``), or put it back:
        no request or WebSocket reaches a crashed worker's port until its restart is healthy
        on a port of its own. Requests go to its other workers meanwhile, or get the 502
        page."""
        self._call(self._set_worker_down, release_id, index, down)

    async def _set_worker_down(self, release_id: int, index: int, down: bool) -> None:
        release = self._releases.get(release_id)
        if release is None:
            return
        if down:
            release.down.add(index)
        else:
            release.down.discard(index)

    def asleep(self, release_id: int) -> bool:
        """Whether the release is routed asleep (its next request wakes it)."""
        release = self._releases.get(release_id)
        return release is not None and release.asleep

    # --- observation -----------------------------------------------------------------------

    def inflight(self, release_id: int) -> int:
        """Open HTTP requests plus WebSocket sessions of a release (0 for one not known)."""
        return self._call(self._inflight, release_id)

    async def _inflight(self, release_id: int) -> int:
        release = self._releases.get(release_id)
        if release is None:
            return 0
        if release.forgotten and release.inflight == 0:
            del self._releases[release_id]
        return release.inflight

    # --- running work on the loop ----------------------------------------------------------

    def _call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            raise Conflict("the proxy is not started; call start() first")
        if threading.current_thread() is thread:
            raise Conflict("the proxy's methods block; do not call them from its own loop")
        return asyncio.run_coroutine_threadsafe(function(*args), loop).result()
