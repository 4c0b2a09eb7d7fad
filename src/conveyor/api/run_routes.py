"""Routes for reports and jobs: their schedules and who is emailed about their runs per
environment, runs started by hand, and the record and log of each run."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.limits import (
    LIST_LENGTH,
    NAME_LENGTH,
    TEXT_LENGTH,
    Id,
    Limit,
    LineId,
    PathName,
)
from conveyor.api.permissions import AuthorizedRoute, CurrentUser, needs, seen_environments_of
from conveyor.domain.access import Permission
from conveyor.domain.run_email import EmailRule, parse_recipients, parse_when
from conveyor.domain.schedules import Run, Trigger, parse_schedule
from conveyor.errors import NotFound
from conveyor.services import run_email, runs, schedules
from conveyor.storage import runs as run_records

router = APIRouter(route_class=AuthorizedRoute)

_SEEN = "only the environments one has a role in"


class ScheduleBody(BaseModel):
    cron: str = Field(
        max_length=NAME_LENGTH, description="five cron fields, e.g. '0 6 * * 1-5', or @daily"
    )
    timezone: str = Field(
        "UTC", max_length=NAME_LENGTH, description="an IANA time zone, e.g. Europe/Berlin"
    )


@router.get(
    "/apps/{app}/schedules", tags=["runs"], openapi_extra=needs(Permission.SIGNED_IN, note=_SEEN)
)
def show_schedules(context: Context, user: CurrentUser, app: PathName) -> list[dict[str, Any]]:
    seen = seen_environments_of(context.services, user, app)
    return [
        {
            "environment": state.environment,
            "cron": state.schedule.cron if state.schedule else None,
            "timezone": state.schedule.timezone if state.schedule else None,
            "source": state.source,
            "active": state.active,
            "next_run": state.next_run,
            "last_run": _last(context, app, state.environment),
        }
        for state in schedules.schedule_table(context.services, app, seen)
    ]


@router.put(
    "/apps/{app}/environments/{environment}/schedule",
    tags=["runs"],
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def set_schedule(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: ScheduleBody
) -> dict[str, Any]:
    schedule = parse_schedule(body.cron, body.timezone)
    schedules.set_schedule(context.services, app, environment, schedule, user.name)
    return {"environment": environment, "cron": schedule.cron, "timezone": schedule.timezone}


@router.delete(
    "/apps/{app}/environments/{environment}/schedule",
    tags=["runs"],
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def unset_schedule(
    context: Context, user: CurrentUser, app: PathName, environment: PathName
) -> JSONResponse:
    schedules.unset_schedule(context.services, app, environment, user.name)
    schedule, source = schedules.schedule_of(context.services, app, environment)
    return JSONResponse(
        {
            "environment": environment,
            "cron": schedule.cron if schedule else None,
            "source": source,
        }
    )


class EmailBody(BaseModel):
    to: list[Annotated[str, Field(max_length=TEXT_LENGTH)]] = Field(
        max_length=LIST_LENGTH,
        description="the addresses to mail; an empty list: no one (not even conveyor.yml's)",
    )
    on: str = Field(
        "failure", max_length=NAME_LENGTH, description="when: failure, success or always"
    )


@router.get(
    "/apps/{app}/email", tags=["runs"], openapi_extra=needs(Permission.SIGNED_IN, note=_SEEN)
)
def show_email(context: Context, user: CurrentUser, app: PathName) -> dict[str, Any]:
    """Who is emailed how the app's runs end, in each environment one sees."""
    seen = seen_environments_of(context.services, user, app)
    return {
        "smtp": context.smtp_configured,
        "note": "" if context.smtp_configured else run_email.NO_SMTP,
        "environments": [
            {
                "environment": state.environment,
                "active": state.active,
                "rules": [
                    {"on": s.rule.on.value, "to": list(s.rule.to), "source": s.source}
                    for s in state.rules
                ],
                "quiet": [{"on": r.on.value, "to": list(r.to)} for r in state.quiet],
            }
            for state in run_email.email_table(context.services, app, seen)
        ],
    }


@router.put(
    "/apps/{app}/environments/{environment}/email",
    tags=["runs"],
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def set_email(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: EmailBody
) -> dict[str, Any]:
    """Mail ``to`` when a run of the app there ends as ``on`` says, in place of conveyor.yml's
    rule for that ``on``."""
    on = parse_when(body.on)
    to = parse_recipients(body.to) if body.to else ()
    run_email.set_rule(context.services, app, environment, EmailRule(to, on), user.name)
    return {
        "environment": environment,
        "on": on.value,
        "to": list(to),
        "warning": "" if context.smtp_configured or not to else run_email.NO_SMTP,
    }


@router.delete(
    "/apps/{app}/environments/{environment}/email",
    tags=["runs"],
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def unset_email(
    context: Context,
    user: CurrentUser,
    app: PathName,
    environment: PathName,
    on: Annotated[str | None, Query(max_length=NAME_LENGTH)] = None,
) -> dict[str, Any]:
    """Forget what was set there for ``on`` (for every ``on`` without it): conveyor.yml's
    rules apply again where schedules are active."""
    when = parse_when(on) if on is not None else None
    run_email.unset_rules(context.services, app, environment, when, user.name)
    return {"environment": environment, "on": when.value if when else None}


@router.post(
    "/apps/{app}/environments/{environment}/runs",
    tags=["runs"],
    status_code=202,
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def start_run(
    context: Context, user: CurrentUser, app: PathName, environment: PathName
) -> JSONResponse:
    """Run the live report or job now (also where schedules are paused); follow it with
    GET .../runs/{id}."""
    begun = context.background.submit(
        lambda started: runs.run(
            context.services, app, environment, Trigger.MANUAL, user.name, started
        )
    )
    # Background hands back the id passed to started(): here the run's, not an operation's.
    assert begun.operation_id is not None  # runs.run reports the run before it can end
    found = run_records.get_run(context.services.store.engine, begun.operation_id)
    return JSONResponse(run_json(found), status_code=202)


@router.get(
    "/apps/{app}/environments/{environment}/runs",
    tags=["runs"],
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def list_runs(
    context: Context, app: PathName, environment: PathName, limit: Limit = 50
) -> list[dict[str, Any]]:
    return [run_json(r) for r in runs.runs_of(context.services, app, environment, limit)]


@router.get(
    "/apps/{app}/environments/{environment}/runs/{run_id}",
    tags=["runs"],
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def get_run(
    context: Context, app: PathName, environment: PathName, run_id: Id, after: LineId = 0
) -> dict[str, Any]:
    """One run and its log lines after line id ``after`` (follow a run by asking again)."""
    engine = context.services.store.engine
    found = run_records.get_run(engine, run_id)
    if (found.app, found.environment) != (app, environment):
        # Seen through another app or environment's permission: as if it did not exist.
        raise NotFound(f"{app} has no run {run_id} in {environment}")
    lines = run_records.log_lines(engine, run_id, after)
    return {
        **run_json(found),
        "log": [{"id": i, "at": at, "line": line} for i, at, line in lines],
    }


def run_json(found: Run) -> dict[str, Any]:
    return {**dataclasses.asdict(found), "trigger": str(found.trigger), "state": str(found.state)}


def _last(context: Context, app: str, environment: str) -> dict[str, Any] | None:
    with context.services.store.transaction() as connection:
        latest = run_records.latest_runs(connection, app, environment, 1)
    return run_json(latest[0]) if latest else None
