"""What every service works with: the store, the runtime, and who is asking."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from conveyor.domain.schedules import Run
from conveyor.runtime.interface import Runtime
from conveyor.storage.store import Store


def _nothing(run: Run) -> None:
    return None


class FilesGuard:
    """Orders releases being started against `conveyor gc`: any number of releases may start
    at once (``starting``), while gc (``collecting``) waits for them and holds them off until it
    is done, so a release never loses its bundle or runtime between being planned and running."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._starting = 0
        self._collecting = False

    @contextmanager
    def starting(self, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """``waiting`` is told, once, when this start has to wait for a gc to finish."""
        with self._condition:
            blocked = self._collecting
        if blocked and waiting is not None:
            waiting("waiting for gc to finish")  # outside the lock: it may write a log line
        with self._condition:
            self._condition.wait_for(lambda: not self._collecting)
            self._starting += 1
        try:
            yield
        finally:
            with self._condition:
                self._starting -= 1
                self._condition.notify_all()

    @contextmanager
    def collecting(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._collecting)
            self._collecting = True  # from now on, no release starts
            self._condition.wait_for(lambda: self._starting == 0)
        try:
            yield
        finally:
            with self._condition:
                self._collecting = False
                self._condition.notify_all()


@dataclass(frozen=True)
class Services:
    store: Store
    runtime: Runtime
    #: Told of every run once its result is recorded (the server emails about it); it must
    #: return at once.
    run_ended: Callable[[Run], None] = _nothing
    files: FilesGuard = field(default_factory=FilesGuard, compare=False)
