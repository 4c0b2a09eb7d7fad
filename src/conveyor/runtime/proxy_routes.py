"""The proxy's routing table: which release of each app takes an environment's traffic, which
releases are draining, and how many requests each one has in flight.

Internal to ``conveyor.runtime.proxy``. Everything here is used only on the proxy's own event
loop, which is what makes a route swap atomic without locks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class WebSocketSession(Protocol):
    """An open WebSocket carried by the proxy, as the drain sees it."""

    async def close(self, code: int, reason: bytes) -> None:
        """Close the session toward the client with ``code``, and its upstream side."""
        ...


class Release:
    """One release as the proxy routes it: its workers' base URLs and what is in flight."""

    __slots__ = (
        "release_id",
        "environment",
        "app",
        "upstreams",
        "strip_prefix",
        "requests",
        "websockets",
        "forgotten",
        "last_active",
        "asleep",
        "waking",
        "wake_failure",
        "failed_wakes",
        "down",
        "_turn",
        "_idle_waiters",
    )

    def __init__(
        self,
        release_id: int,
        environment: str,
        app: str,
        upstreams: tuple[str, ...],
        strip_prefix: bool,
    ) -> None:
        self.release_id = release_id
        self.environment = environment
        self.app = app
        self.upstreams = upstreams
        self.strip_prefix = strip_prefix
        #: HTTP requests in flight, WebSocket handshakes included.
        self.requests = 0
        self.websockets: set[WebSocketSession] = set()
        #: True once drained: no request reaches it any more, not even with its cookie.
        self.forgotten = False
        #: When the release last had a request or WebSocket session (monotonic seconds).
        self.last_active = time.monotonic()
        #: Its processes are stopped; the next request wakes it (see proxy_wake).
        self.asleep = False
        #: The wake under way, which every request arriving meanwhile waits for.
        self.waking: asyncio.Task[str | None] | None = None
        #: Why the last wake failed, and until when (monotonic) that is the answer: a failing
        #: app is not started again on every request.
        self.wake_failure: tuple[str, float] | None = None
        #: Wakes that failed in a row (each doubles the wait before the next try).
        self.failed_wakes = 0
        #: Workers out of the route: crashed, and not yet back healthy on a port of their own
        #: (whatever answers on a crashed worker's port meanwhile is not the app).
        self.down: set[int] = set()
        self._turn = 0
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def inflight(self) -> int:
        return self.requests + len(self.websockets)

    def next_upstream(self) -> int:
        """The index of the next worker, round-robin."""
        index = self._turn % len(self.upstreams)
        self._turn = index + 1
        return index

    def up_from(self, index: int) -> int:
        """Worker ``index``, or the next one in the route when it is down;
        ConnectionRefusedError when every worker is down."""
        for step in range(len(self.upstreams)):
            candidate = (index + step) % len(self.upstreams)
            if candidate not in self.down:
                return candidate
        raise ConnectionRefusedError

    def idle_for(self) -> float | None:
        """Seconds since the release last had a request or WebSocket session; None while it
        has one."""
        if self.inflight:
            return None
        return time.monotonic() - self.last_active

    def touch(self) -> None:
        """Count now as activity (a WebSocket session just ended)."""
        self.last_active = time.monotonic()

    def request_started(self) -> None:
        self.requests += 1
        self.last_active = time.monotonic()

    def request_finished(self) -> None:
        self.requests -= 1
        self.last_active = time.monotonic()
        if self.requests == 0 and self._idle_waiters:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    async def wait_idle(self, deadline: float) -> bool:
        """Wait until no HTTP request is in flight (True), or until the loop time ``deadline``
        (False). Returns as soon as the count reaches zero, even if a request arrives after."""
        if self.requests == 0:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._idle_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        finally:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)
        return True


class AppRoute:
    """Where an app's requests go in one environment: the routed release, and the releases that
    were routed before and are draining (reached only by requests carrying their cookie)."""

    __slots__ = ("app", "prefix", "cookie_name", "live", "draining")

    def __init__(self, app: str) -> None:
        self.app = app
        self.prefix = f"/{app}"
        self.cookie_name = f"conveyor-{app}"
        self.live: Release | None = None
        self.draining: dict[int, Release] = {}

    def choose(self, affinity: str | None) -> tuple[Release, int, bool] | None:
        """The release and worker index for a request carrying the affinity cookie value
        ``affinity`` (or none), and whether a new cookie must be set; None when nothing can take
        it."""
        if affinity:
            release_part, _, index_part = affinity.partition(".")
            if release_part.isdigit() and index_part.isdigit():
                release_id, index = int(release_part), int(index_part)
                live = self.live
                release = (
                    live
                    if live is not None and live.release_id == release_id
                    else self.draining.get(release_id)
                )
                # A release draining asleep is not woken for a cookie: the live one answers.
                usable = release is not None and (release is live or not release.asleep)
                if release is not None and usable and index < len(release.upstreams):
                    return release, index, False
        live = self.live
        if live is None:
            return None
        return live, live.next_upstream(), True

    def set_cookie(self, release: Release, index: int) -> str:
        """The Set-Cookie value that keeps a client on ``release``'s worker ``index``."""
        return (
            f"{self.cookie_name}={release.release_id}.{index}; "
            f"Path={self.prefix}/; HttpOnly; SameSite=Lax"
        )

    @property
    def unused(self) -> bool:
        return self.live is None and not self.draining


def affinity_cookie(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, without parsing every other cookie."""
    if not cookie_header or name not in cookie_header:
        return None
    for pair in cookie_header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None
