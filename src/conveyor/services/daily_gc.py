"""The server's daily gc: a thread that runs retention once a day (the first pass an hour after
the server starts, so a start is not slowed by it) and logs one line of what it freed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from conveyor.periodic import Periodic
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
        waits = iter([first])
        self._periodic = Periodic(
            "conveyor-gc", self.run_once, lambda: next(waits, self.interval), log
        )

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._periodic.stop(timeout)

    @property
    def running(self) -> bool:
        return self._periodic.running

    def run_once(self) -> str:
        """One pass, as the server: its one line."""
        line = "daily " + self.retention.collect("server").summary()
        self.say(line)
        return line
