"""Runs of reports and jobs and their logs in the metadata database. One running run per
(app, environment) is enforced by a unique partial index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError

from conveyor.domain.schedules import Run, RunState, Trigger
from conveyor.errors import NotFound, OperationInProgress
from conveyor.storage import schema
from conveyor.storage.log_lines import append_line, last_lines, lines_after, recent_lines
from conveyor.storage.store import new_row_id, now

_T = schema.runs
#: Lines of a run's log kept (the last ones are what explain a failure).
LOG_LINES = 5000


def start_run(
    engine: Engine, app: str, environment: str, release_id: int, trigger: Trigger, actor: str
) -> Run:
    """Record a new running run; OperationInProgress when one is still running there."""
    try:
        with engine.begin() as connection:
            result = connection.execute(
                insert(_T).values(
                    app=app,
                    environment=environment,
                    release_id=release_id,
                    trigger=trigger.value,
                    actor=actor,
                    state=RunState.RUNNING.value,
                    started_at=now(),
                )
            )
            run_id = new_row_id(result.inserted_primary_key)
    except DatabaseIntegrityError:
        with engine.connect() as connection:
            running = [
                r for r in latest_runs(connection, app, environment, 5) if r.state == "running"
            ]
        since = f" (run {running[0].id}, since {running[0].started_at})" if running else ""
        raise OperationInProgress(
            f"{app} in {environment} is still running{since}; a run starts once it ends "
            f"(`conveyor runs {app} --env {environment}`)"
        ) from None
    return get_run(engine, run_id)


def finish_run(engine: Engine, run_id: int, state: RunState, detail: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(_T)
            .where(and_(_T.c.id == run_id, _T.c.state == RunState.RUNNING.value))
            .values(state=state.value, detail=detail, ended_at=now())
        )


def append_log(engine: Engine, run_id: int, line: str) -> None:
    append_line(engine, schema.run_log, "run", run_id, line)


def log_lines(engine: Engine, run_id: int, after: int = 0) -> list[tuple[int, str, str]]:
    """(id, at, line) of the run's log after line id ``after``, a page at most (PAGE_LINES):
    ask again from the last id for the rest."""
    return lines_after(engine, schema.run_log, "run", run_id, after)


def recent_log(engine: Engine, run_id: int, count: int) -> tuple[list[tuple[int, str, str]], int]:
    """The run's last ``count`` log lines (id, at, line) and how many came before them."""
    return recent_lines(engine, schema.run_log, "run", run_id, count)


def log_tail(engine: Engine, run_id: int, count: int) -> list[str]:
    """The last ``count`` lines of the run's log, oldest first."""
    return last_lines(engine, schema.run_log, "run", run_id, count)


def get_run(engine: Engine, run_id: int) -> Run:
    with engine.connect() as connection:
        row = connection.execute(select(_T).where(_T.c.id == run_id)).mappings().first()
    if row is None:
        raise NotFound(f"there is no run {run_id}")
    return _run(row)


def latest_runs(connection: Connection, app: str, environment: str, limit: int = 50) -> list[Run]:
    """The app's runs in the environment, newest first."""
    rows = connection.execute(
        select(_T)
        .where(and_(_T.c.app == app, _T.c.environment == environment))
        .order_by(_T.c.id.desc())
        .limit(limit)
    ).mappings()
    return [_run(row) for row in rows]


def interrupt_running(engine: Engine) -> list[Run]:
    """Mark every running run interrupted (server start); return them."""
    with engine.begin() as connection:
        rows = connection.execute(select(_T).where(_T.c.state == "running")).mappings().all()
        connection.execute(
            update(_T)
            .where(_T.c.state == "running")
            .values(state="interrupted", ended_at=now(), detail="the server stopped")
        )
    return [_run(row) for row in rows]


def _run(row: Any) -> Run:
    return Run(
        id=row["id"],
        app=row["app"],
        environment=row["environment"],
        release_id=row["release_id"],
        trigger=Trigger(row["trigger"]),
        actor=row["actor"],
        state=RunState(row["state"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        detail=row["detail"],
    )
