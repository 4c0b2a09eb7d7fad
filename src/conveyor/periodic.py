"""A thread that does one piece of work again and again until it is stopped: the server's
scheduler, the sleeper and the daily gc. A pass that fails is logged, and the next one still
comes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Calls ``work()`` after waiting ``wait()`` seconds, again and again, in a daemon thread
    named ``name``, until ``stop()``."""

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        wait: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self.name = name
        self.work = work
        self.wait = wait
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(self.wait()):
            try:
                self.work()
            except Exception:  # the next pass still comes (a database hiccup, a stuck process)
                self.log.exception("%s: a pass failed", self.name)
