"""Waking a sleeping release when a request reaches it.

The release's processes were stopped after a while without traffic (``Proxy.sleep_if_idle``);
the first request starts them again through the runtime's *waker* (its existing runtime and
files: no build, no checks), in a thread of its own because starting blocks. Requests arriving
meanwhile wait for the same wake. A browser loading a page waits a moment, then gets a small
"starting" page that reloads itself; everything else (API calls, assets, WebSocket upgrades)
is held until the app answers. A wake that fails is remembered for a while, so a broken app is
not started again on every request, and each request in that time is told why.

Internal to ``conveyor.runtime.proxy``; runs on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from conveyor.errors import ConveyorError
from conveyor.runtime.proxy_http import Answer
from conveyor.runtime.proxy_pages import Asking, is_navigation, starting, wake_failed
from conveyor.runtime.proxy_routes import Release

#: Starts a sleeping release's processes again and returns its workers' new base URLs;
#: raises (RuntimeFailure) when it cannot.
Waker = Callable[[int], list[str]]

#: How long a page load waits for a waking app before it gets the "starting" page.
NAVIGATION_WAIT = 2.0
#: How long a failed wake is answered from memory before a request tries again: doubling with
#: each failure in a row, up to RETRY_FAILED_WAKE_MAX, so a broken app costs little.
RETRY_FAILED_WAKE = 15.0
RETRY_FAILED_WAKE_MAX = 600.0
#: The longest a request waits for a wake (a start's health check takes at most 90 s; wakes
#: may queue for a thread): then it gets the "starting" answer, with Retry-After.
HOLD_AT_MOST = 150.0
#: At most this many releases start at once; more wait for a thread.
_PARALLEL_WAKES = 8

_log = logging.getLogger("conveyor.proxy")


class Wakes:
    """The wakes under way; the proxy's handlers ask it before forwarding to a release."""

    def __init__(self) -> None:
        self.waker: Waker | None = None
        self._threads: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    async def hold(self, request: Asking, release: Release, websocket: bool) -> Answer | None:
        """Wake ``release`` for ``request``: None once it is awake (forward the request to
        its new upstreams), else the page to answer with (starting, or failed to wake)."""
        failure = release.wake_failure
        if failure is not None and time.monotonic() < failure[1]:
            return wake_failed(request, release.app, release.environment, failure[0])
        if release.waking is None:
            release.waking = asyncio.ensure_future(self._wake(release))
        wait = NAVIGATION_WAIT if not websocket and is_navigation(request) else HOLD_AT_MOST
        # The waiting request counts as in flight: no sleep or drain passes it by.
        release.request_started()
        try:
            why = await asyncio.wait_for(asyncio.shield(release.waking), wait)
        except TimeoutError:
            return starting(request, release.app, release.environment)
        finally:
            release.request_finished()
        if why is not None:
            return wake_failed(request, release.app, release.environment, why)
        return None

    async def _wake(self, release: Release) -> str | None:
        """Start the release's processes; None when it is awake, else why it is not."""
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            if self.waker is None:
                raise ConveyorError("this server cannot wake apps")
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    _PARALLEL_WAKES, thread_name_prefix="conveyor-wake"
                )
            upstreams = await loop.run_in_executor(self._threads, self.waker, release.release_id)
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never a bare 502
            # RuntimeFailure's first line is written for people (the runtime keeps the app's
            # output out of it); anything else says nothing about the server to visitors.
            text = str(exc).strip() if isinstance(exc, ConveyorError) else ""
            why = text.splitlines()[0].rstrip(":") if text else "it did not start"
            release.failed_wakes += 1
            backoff = min(
                RETRY_FAILED_WAKE * 2 ** (release.failed_wakes - 1), RETRY_FAILED_WAKE_MAX
            )
            release.wake_failure = (why, time.monotonic() + backoff)
            _log.warning(
                "%s in %s: release %s did not wake: %s",
                release.app,
                release.environment,
                release.release_id,
                exc,
            )
            return why
        finally:
            release.waking = None
        release.upstreams = tuple(upstreams)
        release.down.clear()  # new workers, on new ports
        release.asleep = False
        release.wake_failure = None
        release.failed_wakes = 0
        release.last_active = time.monotonic()
        _log.info(
            "%s in %s: release %s woke in %.1f s",
            release.app,
            release.environment,
            release.release_id,
            time.monotonic() - began,
        )
        return None
