"""The sleeper: a thread that puts idle releases to sleep (see LocalRuntime.sleep_idle), as
often as the shortest ``sleep_after`` of the routed releases asks (every 1 to 30 seconds)."""

from __future__ import annotations

import logging
from typing import Protocol

from conveyor.periodic import Periodic

log = logging.getLogger("conveyor.sleep")


class Sleepy(Protocol):
    def sleep_idle(self) -> list[int]: ...

    def sleep_check_interval(self) -> float: ...


class Sleeper:
    def __init__(self, runtime: Sleepy) -> None:
        self.runtime = runtime
        self._periodic = Periodic("conveyor-sleeper", self._pass, runtime.sleep_check_interval, log)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._periodic.stop(timeout)

    def _pass(self) -> None:
        slept = self.runtime.sleep_idle()
        if slept:
            log.info("asleep now: release(s) %s", ", ".join(map(str, slept)))
