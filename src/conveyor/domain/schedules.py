"""Schedules and runs: a report or job re-run on a cron schedule in a time zone, and the record
of each run. A schedule fires at most once per slot; after downtime only the latest missed
slot runs (once, not once per slot missed)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from conveyor.errors import InvalidInput

#: How long a run may take unless `timeout:` in conveyor.yml says otherwise.
DEFAULT_TIMEOUT = 3600
#: What "schedules:" an environment has unless its definition says: paused in dev (a
#: developer's sandbox should not mail reports or hit data on its own), active elsewhere.
PAUSED = "paused"
ACTIVE = "active"
SCHEDULE_STATES = (PAUSED, ACTIVE)


def default_schedules_for(environment: str) -> str:
    return PAUSED if environment == "dev" else ACTIVE


@dataclass(frozen=True)
class Schedule:
    """A cron expression (five fields, or @daily and the like) read in ``timezone``."""

    cron: str
    timezone: str = "UTC"

    def latest_slot(self, now: datetime) -> datetime:
        """The latest time at or before ``now`` the schedule was due (aware, in UTC)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        # croniter's get_prev is strictly before its start: start a second later so a slot
        # exactly at ``now`` counts.
        slot: datetime = croniter(self.cron, local + timedelta(seconds=1)).get_prev(datetime)
        return slot.astimezone(ZoneInfo("UTC"))

    def next_slot(self, now: datetime) -> datetime:
        local = now.astimezone(ZoneInfo(self.timezone))
        slot: datetime = croniter(self.cron, local).get_next(datetime)
        return slot.astimezone(ZoneInfo("UTC"))

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone})"


def parse_schedule(cron: str, timezone: str | None = None) -> Schedule:
    """A checked Schedule; InvalidInput saying what is wrong and what a valid one looks like."""
    cron = " ".join(str(cron).split())
    if not cron or not croniter.is_valid(cron) or len(cron.split()) > 5:
        raise InvalidInput(
            f"{cron!r} is not a cron schedule; write five fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 6 * * 1-5' for 06:00 on weekdays, or @daily / @hourly"
        )
    zone = timezone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{zone!r} is not a time zone; use an IANA name such as Europe/Berlin or UTC"
        ) from None
    schedule = Schedule(cron, zone)
    if not comes_due(schedule):
        raise InvalidInput(
            f"{cron!r} never comes due: no month it names has that day (30 February, "
            "31 April, ...); '0 6 28 2 *' comes every year"
        )
    return schedule


#: A fixed moment to look for a schedule's slots from (no clock here): a cron expression's
#: slots repeat within years, so one that has none after it has none at all.
_SINCE = datetime(2001, 1, 1, tzinfo=UTC)


def comes_due(schedule: Schedule) -> bool:
    """Whether the schedule has slots at all: '0 6 30 2 *' (30 February) passes croniter's
    syntax check and then has no next slot, nor a last one."""
    try:
        schedule.next_slot(_SINCE)
    except CroniterBadDateError:
        return False
    return True


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object, what: str) -> int:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` as seconds (at least one)."""
    match = _DURATION.match(str(value)) if not isinstance(value, bool) else None
    if not match or int(match.group(1)) < 1:
        raise InvalidInput(f"{what}: {value!r} is not a duration; write e.g. 90s, 30m or 2h")
    return int(match.group(1)) * _SECONDS[match.group(2) or "s"]


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The server stopped while it ran.
    INTERRUPTED = "interrupted"


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


@dataclass(frozen=True)
class Run:
    id: int
    app: str
    environment: str
    release_id: int
    trigger: Trigger
    actor: str
    state: RunState
    started_at: str
    ended_at: str | None = None
    detail: str = ""
