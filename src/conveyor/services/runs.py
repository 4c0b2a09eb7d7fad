"""Running a report or job again: by hand (`conveyor run`) or on its schedule. A run uses the
live release's runtime, sandbox, configuration, data connections and output location; it is
not a deploy (no checks, the release keeps its id). A failed run leaves the previous output
served."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection

from conveyor.domain.apps import RUNNABLE_TYPES, AppType
from conveyor.domain.schedules import Run, RunState, Trigger
from conveyor.errors import ConveyorError, InvalidInput, NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, releases, runs

log = logging.getLogger("conveyor.runs")


def run(
    services: Services,
    app: str,
    environment: str,
    trigger: Trigger,
    actor: str,
    started: Callable[[int], None] = lambda run_id: None,
) -> Run:
    """Run the live release of ``app`` in ``environment`` now and wait for it to end;
    ``started(run_id)`` is called once the run is recorded. OperationInProgress when one is
    still running there."""
    engine = services.store.engine
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        live = releases.live_release(connection, app, environment)
        if live is None:
            raise NotFound(f"{app} has no live release in {environment}; deploy it first")
        app_type = catalog.get_bundle(connection, app, live.bundle_id)["manifest"]["type"]
        if AppType(app_type) not in RUNNABLE_TYPES:
            raise InvalidInput(
                f"{app} is a {app_type} app: it serves requests and has nothing to run; "
                f"runs are for {', '.join(sorted(RUNNABLE_TYPES))} apps"
            )
    record = runs.start_run(engine, app, environment, live.id, trigger, actor)
    if trigger is Trigger.MANUAL:
        with services.store.transaction() as connection:
            audit.record(connection, actor, "app.run", f"{app}/{environment}", {"run": record.id})
    started(record.id)

    def line(text: str) -> None:
        runs.append_log(engine, record.id, text)

    line(f"run {record.id} of {app} in {environment} (release {live.id}, {trigger} by {actor})")
    try:
        services.runtime.run(live.id, record.id, line)
    except ConveyorError as exc:
        line(f"failed: {exc}")
        runs.finish_run(engine, record.id, RunState.FAILED, str(exc).splitlines()[0])
    except Exception as exc:  # a bug must not leave the run "running" forever
        log.exception("run %s failed unexpectedly", record.id)
        runs.finish_run(engine, record.id, RunState.FAILED, f"internal error: {exc}")
    else:
        line("succeeded: its output is served from now on")
        runs.finish_run(engine, record.id, RunState.SUCCEEDED, "")
    ended = runs.get_run(engine, record.id)
    try:
        services.run_ended(ended)  # email, in the background: the result is recorded already
    except Exception:
        log.exception("after run %s", record.id)
    return ended


def runs_of(services: Services, app: str, environment: str, limit: int = 50) -> list[Run]:
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}")
        return runs.latest_runs(connection, app, environment, limit)


def last_failed(connection: Connection, app: str, environment: str) -> Run | None:
    """The app's latest finished run there when it failed (status shows it), else None."""
    for found in runs.latest_runs(connection, app, environment, 5):
        if found.state is RunState.RUNNING:
            continue
        return found if found.state in (RunState.FAILED, RunState.INTERRUPTED) else None
    return None


def failure_note(connection: Connection, app: str, environment: str) -> str | None:
    """How the app's latest run there failed ("run 12 failed at <time>: why"), else None."""
    failed = last_failed(connection, app, environment)
    if failed is None:
        return None
    when = failed.ended_at or failed.started_at
    return f"run {failed.id} {failed.state} at {when[:19]}: {failed.detail or 'see its log'}"
