"""The server's answers to the proxy's questions (runtime/proxy_gate.py): who may view an app
(its viewer access), whose session a cookie is, and where page views are counted.

Both answers are cached for a few seconds, so the proxy does not ask the database on every
request: a change of access, a sign-out or a disabled user takes effect within that time.
Page views are kept in memory and written every few seconds, in one transaction."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.parse
from datetime import UTC, datetime

from conveyor.domain.access import User
from conveyor.domain.viewers import NOBODY, ViewerAccess
from conveyor.errors import NotFound
from conveyor.runtime.proxy_gate import Decision, Gate
from conveyor.services import sign_in, viewers
from conveyor.services.context import Services
from conveyor.services.viewers import Visit

log = logging.getLogger("conveyor.server")

#: How long an answer about access or a session is reused.
CACHE_SECONDS = 3.0
#: How often page views are written.
FLUSH_SECONDS = 5.0


class ViewerGate:
    def __init__(
        self,
        services: Services,
        console_url: str | None,
        *,
        scheme: str = "http",
        port: int = 8700,
    ) -> None:
        self.services = services
        self.console_url = console_url.rstrip("/") if console_url else None
        self.scheme, self.port = scheme, port
        self._access: dict[tuple[str, str], tuple[float, ViewerAccess]] = {}
        self._sessions: dict[str, tuple[float, User | None]] = {}
        self._visits: list[Visit] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def gate(self) -> Gate:
        return Gate(self.decide, self.viewed)

    async def decide(self, environment: str, app: str, cookie: str | None, url: str) -> Decision:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._decide, environment, app, cookie, url)

    def _decide(self, environment: str, app: str, cookie: str | None, url: str) -> Decision:
        access = self._access_of(environment, app)
        user = self._user_of(cookie) if cookie else None
        name = user.name if user else None
        private = access.needs_sign_in
        if access.allows(user):
            return Decision(True, name, private=private)
        if user is None:
            sealed = {"next": url, "seal": sign_in.seal_next(self.services, url)}
            target = f"{self._console_for(url)}/signin?" + urllib.parse.urlencode(sealed)
            return Decision(False, sign_in=target, private=private)
        # Who it is open to is not told: a refused viewer learns no names.
        return Decision(
            False,
            name,
            reason=f"{user.name} may not view {app} in {environment}: it is open to named "
            "people only. Ask whoever releases it there to add you.",
            private=private,
        )

    def _console_for(self, url: str) -> str:
        """The console's address for a visitor of ``url``: the configured one, else the
        console's port on the host they reached the app by."""
        if self.console_url:
            return self.console_url
        host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}"

    def _access_of(self, environment: str, app: str) -> ViewerAccess:
        now = time.monotonic()
        with self._lock:
            cached = self._access.get((environment, app))
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            access = viewers.access_of(self.services, app, environment)
        except NotFound:
            access = ViewerAccess()  # an app the store does not know: the proxy has no route
        except Exception as exc:  # the store could not answer: the last answer, else closed
            log.warning("viewer access of %s in %s could not be read (%s)", app, environment, exc)
            return cached[1] if cached is not None else NOBODY
        with self._lock:
            self._access[(environment, app)] = (now, access)
        return access

    def _user_of(self, cookie: str) -> User | None:
        now = time.monotonic()
        with self._lock:
            cached = self._sessions.get(cookie)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            found = sign_in.session_user(self.services, cookie)
        except Exception as exc:  # the store could not answer: the last answer, else nobody
            log.warning("a console session could not be read (%s)", exc)
            return cached[1] if cached is not None else None
        user = found[0] if found else None
        with self._lock:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[cookie] = (now, user)
        return user

    # --- usage -----------------------------------------------------------------------------------

    def viewed(self, environment: str, app: str, viewer: str, session: str) -> None:
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        with self._lock:
            self._visits.append(Visit(app, environment, hour, viewer, session))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._flushing, name="conveyor-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            visits, self._visits = self._visits, []
        if visits:
            viewers.record_usage(self.services, visits)

    def _flushing(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception as exc:  # a background thread: say it, and go on counting
                log.warning("page views could not be written (%s); they are not counted", exc)
