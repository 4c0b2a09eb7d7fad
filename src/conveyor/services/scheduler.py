"""The server's scheduler: a thread that looks for due schedules a few times a minute and
starts their runs (each in its own thread, handed to ``submit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from conveyor.domain.schedules import Trigger
from conveyor.errors import ConveyorError
from conveyor.periodic import Periodic
from conveyor.services import runs, schedules
from conveyor.services.context import Services

log = logging.getLogger("conveyor.scheduler")

#: The name runs started by a schedule are recorded under.
SCHEDULE_ACTOR = "schedule"

#: submit(work): start ``work(started)`` in a thread; return once it called started(run_id).
Submit = Callable[[Callable[[Callable[[int], None]], Any]], Any]


class Scheduler:
    def __init__(
        self,
        services: Services,
        submit: Submit,
        *,
        interval: float = 10.0,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.services = services
        self.submit = submit
        self.interval = interval
        self.say = say
        self._periodic = Periodic("conveyor-scheduler", self.tick, lambda: self.interval, log)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._periodic.stop(timeout)

    def tick(self, moment: datetime | None = None) -> list[schedules.Due]:
        """Start every run due at ``moment`` (now); return what was due."""
        found = schedules.due(self.services, moment or datetime.now(UTC))
        for due in found:
            try:
                self.submit(self._work(due))
            except ConveyorError as exc:  # still running from the last slot, or stopping
                self.say(f"schedule of {due.app} in {due.environment} at {due.slot}: {exc}")
        return found

    def _work(self, due: schedules.Due) -> Callable[[Callable[[int], None]], Any]:
        def work(started: Callable[[int], None]) -> Any:
            return runs.run(
                self.services, due.app, due.environment, Trigger.SCHEDULE, SCHEDULE_ACTOR, started
            )

        return work
