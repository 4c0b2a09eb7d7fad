"""The server's daily gc: a thread that runs retention once a day (the first pass an hour after
the server starts, so a start is not slowed by it) and logs one line of what it freed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from conveyor.services.retention import Retention

log = logging.getLogger("conveyor.retention")

DAY = 86400.0


class DailyGc:
    def __init__(
        self,
        retention: Retention,
        *,
        interval: float = DAY,
        first: float = 3600.0,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.retention = retention
        self.interval = interval
        self.first = first
        self.say = say
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="conveyor-gc", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> str:
        """One pass, as the server: its one line."""
        line = "daily " + self.retention.collect("server").summary()
        self.say(line)
        return line

    def _loop(self) -> None:
        wait = self.first
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.run_once()
            except Exception:  # the next day's pass still comes (a database hiccup)
                log.exception("daily gc failed")
