"""The console's runs of reports and jobs: on the app's page, each environment's schedule,
who is emailed, the latest runs and a Run now button; a run's own page with its log (live
while it runs) and a link to its output. The same services and permission checks as
`conveyor run`, `conveyor runs`, `conveyor schedule show` and `conveyor email show`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.context import ApiContext, Context
from conveyor.api.limits import NAME_LENGTH, TEXT_LENGTH, Id, LineId, PathName
from conveyor.api.permissions import CurrentUser, needs
from conveyor.console.live import SHOWN_LINES, follow_log, log_text, resumed_after
from conveyor.console.session import ConsoleRoute, page_error, page_values, redirect_with_notice
from conveyor.console.templates import render
from conveyor.domain.access import Permission, User
from conveyor.domain.apps import RUNNABLE_TYPES, AppType
from conveyor.domain.run_email import EmailRule, parse_recipients, parse_when
from conveyor.domain.schedules import Run, RunState, Trigger, parse_schedule
from conveyor.errors import ConveyorError, NotFound
from conveyor.services import run_email, runs, schedules
from conveyor.services.run_email import EmailState
from conveyor.services.schedules import ScheduleState
from conveyor.storage import catalog, releases
from conveyor.storage import runs as run_records

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

#: Runs listed per environment on the app's page (`conveyor runs` lists more).
LISTED = 10


@dataclass(frozen=True)
class RunsIn:
    """What the app's page shows of its runs in one environment."""

    environment: str
    schedule: ScheduleState
    email: EmailState
    latest: list[Run]
    #: Whether the signed-in user may start a run there: the run permission, and a live
    #: release to run.
    may_run: bool
    #: Whether the signed-in user may set the schedule and who is emailed there.
    may_set: bool


def runs_section(context: ApiContext, user: User, app: str, seen: list[str]) -> list[RunsIn]:
    """The app's runs in each environment the user sees where it runs: its live release
    there is a report or job, or nothing is live there and its newest bundle is one, or it
    ran there before (a release of another type went live since). Empty for an app that
    only serves requests. Run now is offered only where the live release runs."""
    services = context.services
    with services.store.transaction() as connection:
        bundles = catalog.bundles_of(connection, app)
        if not bundles or not seen:
            return []
        newest = _runnable(catalog.get_bundle(connection, app, bundles[0]["id"]))
        live_runs: dict[str, bool] = {}
        for environment in seen:
            live = releases.live_release(connection, app, environment)
            if live is not None:
                bundle = catalog.get_bundle(connection, app, live.bundle_id)
                live_runs[environment] = _runnable(bundle)
        shown = [
            environment
            for environment in seen
            if live_runs.get(environment, newest)
            or run_records.latest_runs(connection, app, environment, 1)
        ]
    if not shown:
        return []
    found_schedules = schedules.schedule_table(services, app, shown)
    emails = run_email.email_table(services, app, shown)
    return [
        RunsIn(
            environment,
            schedule,
            email,
            runs.runs_of(services, app, environment, LISTED),
            live_runs.get(environment, False) and user.can(Permission.RUN, environment),
            user.can(Permission.RUN, environment),
        )
        for environment, schedule, email in zip(shown, found_schedules, emails, strict=True)
    ]


def _runnable(bundle: dict[str, Any]) -> bool:
    return AppType(bundle["manifest"]["type"]) in RUNNABLE_TYPES


@router.post(
    "/apps/{app}/environments/{environment}/run",
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def run_now(
    request: Request, context: Context, user: CurrentUser, app: PathName, environment: PathName
) -> Response:
    """Start a run of the live release (as `conveyor run`) and show its page."""
    try:
        begun = context.background.submit(
            lambda started: runs.run(
                context.services, app, environment, Trigger.MANUAL, user.name, started
            )
        )
    except ConveyorError as exc:
        return page_error(request, 409, "Refused", str(exc))
    path = f"/apps/{app}/environments/{environment}/runs/{begun.operation_id}"
    return redirect_with_notice(request, path, f"Run {begun.operation_id} of {app} started.")


@router.get(
    "/apps/{app}/environments/{environment}/runs/{run_id}",
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def run_page(
    request: Request, context: Context, app: PathName, environment: PathName, run_id: Id
) -> Response:
    engine = context.services.store.engine
    found = _run_of(context, app, environment, run_id)
    if found is None:
        return page_error(request, 404, "Not found", f"{app} has no run {run_id} in {environment}.")
    lines, earlier = run_records.recent_log(engine, run_id, SHOWN_LINES)
    with context.services.store.transaction() as connection:
        domain = catalog.get_environment(connection, environment).domain
    # As run emails link it: at the app's own origin where the environment has host routing
    # (not the listener every app there shares), else at the environment's listener.
    base = f"https://{app}.{domain}" if domain else context.urls.get(environment)
    return render(
        "run.html",
        **page_values(
            request,
            title=f"Run {run_id} of {app}",
            section="board",
            run=found,
            lines=[line for _, _, line in lines],
            earlier=earlier,
            shown=SHOWN_LINES,
            after=lines[-1][0] if lines else 0,
            output=f"{base}/{app}/_runs/{run_id}/" if base else None,
        ),
    )


@router.get(
    "/apps/{app}/environments/{environment}/runs/{run_id}/log.txt",
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def run_log_text(
    request: Request, context: Context, app: PathName, environment: PathName, run_id: Id
) -> Response:
    """The run's whole log as text (its page shows the last lines)."""
    if _run_of(context, app, environment, run_id) is None:
        return page_error(request, 404, "Not found", f"{app} has no run {run_id} in {environment}.")
    engine = context.services.store.engine
    return StreamingResponse(
        log_text(lambda after: run_records.log_lines(engine, run_id, after)),
        media_type="text/plain; charset=utf-8",
    )


@router.get(
    "/events/apps/{app}/environments/{environment}/runs/{run_id}",
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
async def run_events(
    request: Request,
    context: Context,
    app: PathName,
    environment: PathName,
    run_id: Id,
    after: LineId = 0,
) -> Response:
    """The run's log from after line ``after``, then how it ended. A run that is not there
    (or not the app's there) is a 404, as its page: a browser's EventSource gives up on it
    rather than connecting again and again to an empty stream."""
    engine = context.services.store.engine
    after = resumed_after(request, after)
    if await run_in_threadpool(_run_of, context, app, environment, run_id) is None:
        return page_error(request, 404, "Not found", f"{app} has no run {run_id} in {environment}.")

    def look(seen: int) -> tuple[list[tuple[int, Any, str]], str | None] | None:
        found = _run_of(context, app, environment, run_id)  # its state first, then its lines
        if found is None:
            return None
        lines = run_records.log_lines(engine, run_id, seen)
        if found.state is RunState.RUNNING:
            return lines, None
        return lines, f"{found.state}: {found.detail}" if found.detail else str(found.state)

    return StreamingResponse(follow_log(request, after, look), media_type="text/event-stream")


def _run_of(context: ApiContext, app: str, environment: str, run_id: int) -> Run | None:
    """The run, when it is of ``app`` in ``environment`` (the permission checked was for
    that environment: a run elsewhere is as if it did not exist)."""
    try:
        found = run_records.get_run(context.services.store.engine, run_id)
    except NotFound:
        return None
    return found if (found.app, found.environment) == (app, environment) else None


@router.post(
    "/apps/{app}/environments/{environment}/schedule",
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def set_schedule(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: PathName,
    environment: PathName,
    cron: Annotated[str, Form(max_length=NAME_LENGTH)] = "",
    timezone: Annotated[str, Form(max_length=NAME_LENGTH)] = "UTC",
    unset: Annotated[str, Form(max_length=NAME_LENGTH)] = "",
) -> Response:
    """Set the schedule of the app there, or (``unset``) forget the one set, as `conveyor
    schedule set` and `unset` do."""
    try:
        if unset:
            schedules.unset_schedule(context.services, app, environment, user.name)
            notice = f"The schedule set for {app} in {environment} is forgotten."
        else:
            schedule = parse_schedule(cron, timezone.strip() or "UTC")
            schedules.set_schedule(context.services, app, environment, schedule, user.name)
            notice = f"{app} runs in {environment} on {schedule.describe()}."
    except ConveyorError as exc:
        return _not_set(request, exc)
    return redirect_with_notice(request, f"/apps/{app}", notice)


@router.post(
    "/apps/{app}/environments/{environment}/email",
    openapi_extra=needs(Permission.RUN, "path:environment"),
)
def set_email(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: PathName,
    environment: PathName,
    on: Annotated[str, Form(max_length=NAME_LENGTH)] = "failure",
    to: Annotated[str, Form(max_length=TEXT_LENGTH)] = "",
    nobody: Annotated[str, Form(max_length=NAME_LENGTH)] = "",
    unset: Annotated[str, Form(max_length=NAME_LENGTH)] = "",
) -> Response:
    """Who is emailed when a run of the app there ends as ``on`` says (``nobody``: no one,
    not even conveyor.yml's recipients), or (``unset``) forget what was set for ``on``, as
    `conveyor email set` and `unset` do."""
    try:
        when = parse_when(on)
        if unset:
            run_email.unset_rules(context.services, app, environment, when, user.name)
            notice = f"Email on {when} for {app} in {environment}: as conveyor.yml says again."
        else:
            # No one only when asked for: an empty field is a slip, not a wish to hear nothing.
            recipients = () if nobody else parse_recipients(to)
            rule = EmailRule(recipients, when)
            run_email.set_rule(context.services, app, environment, rule, user.name)
            who = ", ".join(recipients) or "no one"
            notice = f"{who} will be emailed on {when} for {app} in {environment}."
            if recipients and not context.smtp_configured:
                notice += " " + run_email.NO_SMTP
    except ConveyorError as exc:
        return _not_set(request, exc)
    return redirect_with_notice(request, f"/apps/{app}", notice)


def _not_set(request: Request, refused: ConveyorError) -> Response:
    """A refused schedule or email setting, as the API answers it: 404 for what is not there
    (an app, or a setting to forget), 422 for what is wrong."""
    if isinstance(refused, NotFound):
        return page_error(request, 404, "Not found", str(refused))
    return page_error(request, 422, "Not set", str(refused))
