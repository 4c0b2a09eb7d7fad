"""Schedules of reports and jobs: set per app and environment (or the bundle's own
`schedule:`), paused or active per environment, and which are due now."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from conveyor.domain.apps import RUNNABLE_TYPES, AppType
from conveyor.domain.schedules import ACTIVE, Schedule, comes_due
from conveyor.errors import InvalidInput, NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, releases, schema
from conveyor.storage.store import now

_S = schema.schedules


@dataclass(frozen=True)
class ScheduleState:
    """An app's schedule in one environment, as `conveyor schedule show` shows it."""

    environment: str
    schedule: Schedule | None
    #: Where it comes from: "set by ana", "conveyor.yml", or "" when there is none.
    source: str
    #: False in an environment whose schedules are paused (runs only by hand there).
    active: bool
    next_run: str | None  # ISO 8601, UTC; None when paused, unscheduled or never due


@dataclass(frozen=True)
class Due:
    """A live report or job release whose schedule came due at ``slot``."""

    app: str
    environment: str
    release_id: int
    slot: str


def set_schedule(
    services: Services, app: str, environment: str, schedule: Schedule, actor: str
) -> None:
    """Run ``app`` in ``environment`` on ``schedule`` (it wins over the bundle's own); from
    the next slot on, never for a slot already past."""
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; deploy it first")
        refuse_unrunnable(connection, app, environment)
        slot = schedule.latest_slot(datetime.now(UTC)).isoformat()
        _save(connection, app, environment, schedule.cron, schedule.timezone, actor, slot)
        audit.record(
            connection,
            actor,
            "app.schedule",
            f"{app}/{environment}",
            {"schedule": schedule.describe()},
        )


def unset_schedule(services: Services, app: str, environment: str, actor: str) -> None:
    """Forget the schedule set for ``app`` in ``environment`` (the bundle's own applies)."""
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        row = _row(connection, app, environment)
        if row is None or row.cron is None:
            raise NotFound(f"{app} has no schedule set in {environment}")
        _save(connection, app, environment, None, None, actor, row.last_slot)
        audit.record(connection, actor, "app.schedule", f"{app}/{environment}", {"schedule": ""})


def schedule_of(services: Services, app: str, environment: str) -> tuple[Schedule | None, str]:
    """The schedule that applies and where it comes from."""
    with services.store.transaction() as connection:
        return _effective(connection, app, environment)


def schedule_table(
    services: Services, app: str, environments: Iterable[str]
) -> list[ScheduleState]:
    found = []
    moment = datetime.now(UTC)
    with services.store.transaction() as connection:
        for name in environments:
            environment = catalog.get_environment(connection, name)
            schedule, source = _effective(connection, app, name)
            active = environment.schedules == ACTIVE
            upcoming = None
            if schedule and active and comes_due(schedule):
                upcoming = schedule.next_slot(moment).isoformat()
            found.append(ScheduleState(name, schedule, source, active, upcoming))
    return found


def due(services: Services, moment: datetime) -> list[Due]:
    """The scheduled runs due at ``moment``; each slot is handed out once (the latest slot
    after downtime, not each one missed). Slots in paused environments pass unrun."""
    found = []
    with services.store.transaction() as connection:
        environments = {e.name: e for e in catalog.list_environments(connection)}
        for release in releases.all_live(connection):
            schedule, _ = _effective(connection, release.app, release.environment)
            if schedule is None or not comes_due(schedule):
                continue  # none, or one stored before never-due ones were refused
            slot = schedule.latest_slot(moment).isoformat()
            row = _row(connection, release.app, release.environment)
            last = row.last_slot if row is not None else None
            if last is not None and last >= slot:
                continue
            if not _claim_slot(connection, release.app, release.environment, slot, row):
                continue  # another server handed it out first
            environment = environments.get(release.environment)
            if last is None or environment is None or environment.schedules != ACTIVE:
                continue  # first seen: from the next slot on; paused: slots pass
            found.append(Due(release.app, release.environment, release.id, slot))
    return found


def _effective(connection: Connection, app: str, environment: str) -> tuple[Schedule | None, str]:
    row = _row(connection, app, environment)
    if row is not None and row.cron is not None:
        return Schedule(row.cron, row.timezone or "UTC"), f"set by {row.updated_by}"
    live = releases.live_release(connection, app, environment)
    if live is None:
        return None, ""
    manifest = catalog.get_bundle(connection, app, live.bundle_id)["manifest"]
    if AppType(manifest["type"]) not in RUNNABLE_TYPES:
        return None, ""
    declared = (manifest.get("run") or {}).get("schedule")
    if not declared:
        return None, ""
    return Schedule(declared["cron"], declared["timezone"]), "conveyor.yml"


def refuse_unrunnable(connection: Connection, app: str, environment: str) -> None:
    live = releases.live_release(connection, app, environment)
    if live is None:
        return  # set ahead of the first release: it applies once one is live
    app_type = catalog.get_bundle(connection, app, live.bundle_id)["manifest"]["type"]
    if AppType(app_type) not in RUNNABLE_TYPES:
        raise InvalidInput(
            f"{app} is a {app_type} app, which serves requests and does not run on a "
            f"schedule; schedules are for {', '.join(sorted(RUNNABLE_TYPES))} apps"
        )


def _row(connection: Connection, app: str, environment: str) -> Any:
    return connection.execute(
        select(_S).where(and_(_S.c.app == app, _S.c.environment == environment))
    ).first()


def _save(
    connection: Connection,
    app: str,
    environment: str,
    cron: str | None,
    timezone: str | None,
    actor: str,
    last_slot: str | None,
) -> None:
    values = {
        "cron": cron,
        "timezone": timezone,
        "updated_by": actor,
        "updated_at": now(),
        "last_slot": last_slot,
    }
    key = and_(_S.c.app == app, _S.c.environment == environment)
    if connection.execute(select(_S.c.app).where(key)).first() is None:
        connection.execute(insert(_S).values(app=app, environment=environment, **values))
    else:
        connection.execute(update(_S).where(key).values(**values))


def _claim_slot(connection: Connection, app: str, environment: str, slot: str, row: Any) -> bool:
    """Record ``slot`` as handled; False when it already was (by another server)."""
    if row is not None:
        claimed = connection.execute(
            update(_S)
            .where(
                and_(
                    _S.c.app == app,
                    _S.c.environment == environment,
                    or_(_S.c.last_slot.is_(None), _S.c.last_slot < slot),
                )
            )
            .values(last_slot=slot)
        )
        return bool(claimed.rowcount)
    else:
        connection.execute(
            insert(_S).values(
                app=app,
                environment=environment,
                cron=None,
                timezone=None,
                updated_by="conveyor",
                updated_at=now(),
                last_slot=slot,
            )
        )
        return True
