"""The sleeper: a thread that puts idle releases to sleep (see LocalRuntime.sleep_idle), as
often as the shortest ``sleep_after`` of the routed releases asks (every 1 to 30 seconds)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger("conveyor.sleep")


class Sleepy(Protocol):
    def sleep_idle(self) -> list[int]: ...

    def sleep_check_interval(self) -> float: ...


class Sleeper:
    def __init__(self, runtime: Sleepy) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="conveyor-sleeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.runtime.sleep_check_interval()):
            try:
                slept = self.runtime.sleep_idle()
            except Exception:  # the sleeper outlives one failed pass (a stuck process)
                log.exception("putting idle releases to sleep failed")
                continue
            if slept:
                log.info("asleep now: release(s) %s", ", ".join(map(str, slept)))
