"""What every service works with: the store, the runtime, and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conveyor.domain.schedules import Run
from conveyor.runtime.interface import Runtime
from conveyor.storage.store import Store


def _nothing(run: Run) -> None:
    return None


@dataclass(frozen=True)
class Services:
    store: Store
    runtime: Runtime
    #: Told of every run once its result is recorded (the server emails about it); it must
    #: return at once.
    run_ended: Callable[[Run], None] = _nothing
