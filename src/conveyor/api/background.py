"""Release operations run in the background: a request returns as soon as the operation holds
its (app, environment), and clients follow the operation's log. A refusal (policy, conflict)
happens before that, so it is the request's own answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import Conflict
from conveyor.services.releasing import Started

log = logging.getLogger("conveyor.server")


@dataclass(frozen=True)
class Begun:
    """How a submitted piece of work began: an operation id, or a result without one (e.g.
    "already live")."""

    operation_id: int | None
    result: Any = None


class Background:
    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, work: Callable[[Started], Any]) -> Begun:
        """Run ``work(started)`` in a thread; return once it calls ``started(operation_id)``,
        returns, or raises (the error is raised here)."""
        ready = threading.Event()
        outcome: dict[str, Any] = {}

        def started(operation_id: int) -> None:
            outcome["operation"] = operation_id
            ready.set()

        def run() -> None:
            try:
                outcome["result"] = work(started)
            except BaseException as exc:  # reported to the caller, or logged when it has gone
                outcome["error"] = exc
                if "operation" in outcome:
                    log.warning("operation %s ended with %s", outcome["operation"], exc)
            finally:
                ready.set()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        with self._lock:
            if self._closed:
                raise Conflict("the server is stopping and takes no new operations; retry soon")
            thread = threading.Thread(target=run, name="conveyor-operation", daemon=True)
            self._threads.add(thread)
        thread.start()
        ready.wait()
        if "operation" in outcome:
            return Begun(outcome["operation"])
        if "error" in outcome:
            raise outcome["error"]
        return Begun(None, outcome.get("result"))

    def close(self, timeout: float) -> list[threading.Thread]:
        """Take no new work; wait up to ``timeout`` seconds for running work; return what is
        still running (the next start marks its operations interrupted)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread in threads if thread.is_alive()]
