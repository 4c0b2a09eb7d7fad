"""The console's pages for everyone signed in: sign-in and sign-out, the board, an app's page,
the actions (promote, approve, roll back, deploy, variables, viewers), an operation's live
log, an app's output, and the server-sent events that keep them live (runs of reports and jobs
are console/runs.py's)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.context import ApiContext, Context
from conveyor.api.limits import LineId
from conveyor.api.permissions import CheckedEnvironments, CurrentUser, needs, visible
from conveyor.console.live import (
    SHOWN_LINES,
    event,
    follow_log,
    log_text,
    resumed_after,
    while_allowed,
)
from conveyor.console.runs import runs_section
from conveyor.console.session import (
    COOKIE,
    ConsoleRoute,
    page_error,
    page_values,
    redirect_with_notice,
    safe_next,
    set_session_cookie,
    signin_page,
)
from conveyor.console.templates import STATIC, fragment, render
from conveyor.domain.access import Permission, User
from conveyor.domain.operations import OperationState
from conveyor.domain.viewers import parse_access
from conveyor.errors import ConveyorError, Forbidden, Unauthorized
from conveyor.services import board, pipeline, sign_in, status, variables, viewers
from conveyor.services.board import Offer
from conveyor.storage import audit, catalog, operations, releases

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- signing in --------------------------------------------------------------------------------


@router.get("/static/{name}", openapi_extra=needs(Permission.PUBLIC))
def static(name: str) -> Response:
    if name not in _STATIC:
        return Response(status_code=404)
    return FileResponse(
        STATIC / name, media_type=_STATIC[name], headers={"Cache-Control": "max-age=300"}
    )


@router.get("/signin", openapi_extra=needs(Permission.PUBLIC))
def signin_form(request: Request, next: str = "/", seal: str = "") -> Response:
    return signin_page(request, next, seal)


@router.post("/signin", openapi_extra=needs(Permission.PUBLIC))
def signin(
    request: Request,
    context: Context,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
    seal: Annotated[str, Form()] = "",
) -> Response:
    try:
        signed = sign_in.sign_in(context.services, username, password, _address(request))
    except (Unauthorized, Forbidden) as refused:
        error = str(refused)[0].upper() + str(refused)[1:] + "."
        return signin_page(request, next, seal, username=username, error=error)
    response = RedirectResponse(safe_next(next, request, seal), status_code=303)
    set_session_cookie(response, request, signed.cookie, context.console)
    return response


@router.post("/signout", openapi_extra=needs(Permission.SIGNED_IN))
def signout(request: Request, context: Context) -> Response:
    sign_in.sign_out(context.services, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", domain=context.console.cookie_domain)
    return response


# --- the board and an app's page -----------------------------------------------------------------


def _offer_url(app: str, environment: str, offer: Offer) -> str:
    if offer.action == "promote":
        return f"/apps/{app}/promote?to={environment}"
    return f"/apps/{app}/environments/{environment}/{offer.action}"


def _board_of(context: ApiContext, user: User, apps: list[str] | None = None) -> board.Board:
    return board.board(context.services, user, apps, context.drift.problems(context.services))


def _board_html(context: ApiContext, user: User, csrf: str, apps: list[str] | None) -> str:
    found = _board_of(context, user, apps)
    return fragment("board_table.html", board=found, csrf=csrf, offer_url=_offer_url)


@router.get("/", openapi_extra=needs(Permission.SIGNED_IN))
def board_page(request: Request, context: Context, user: CurrentUser) -> Response:
    found = _board_of(context, user)
    return render(
        "board.html",
        **page_values(
            request,
            title="Pipeline",
            section="board",
            board=found,
            offer_url=_offer_url,
        ),
    )


@router.get("/events/board", openapi_extra=needs(Permission.SIGNED_IN))
async def board_events(
    request: Request, context: Context, user: CurrentUser, app: str | None = None
) -> StreamingResponse:
    """The board's table, sent again whenever it changes (server-sent events)."""
    csrf = page_values(request)["csrf"]
    apps = [app] if app else None

    async def changes() -> AsyncIterator[str]:
        last = ""
        async for now in while_allowed(request):
            html = await run_in_threadpool(_board_html, context, now, csrf, apps)
            digest = hashlib.sha256(html.encode()).hexdigest()
            if digest != last:
                last = digest
                yield event("replace", html)
            else:
                yield ": still here\n\n"

    return StreamingResponse(changes(), media_type="text/event-stream")


@router.get("/apps/{app}", openapi_extra=needs(Permission.SIGNED_IN))
def app_page(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    left: str | None = None,
    right: str | None = None,
) -> Response:
    services = context.services
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            return page_error(request, 404, "Not found", f"There is no app {app!r}.")
        environments = catalog.list_environments(connection)
        bundles = catalog.bundles_of(connection, app)
    seen = visible(user, [e.name for e in environments])
    found = _board_of(context, user, [app])
    differences = []
    if left and right:
        if not (user.can(Permission.VIEW, left) and user.can(Permission.VIEW, right)):
            return page_error(
                request, 403, "Not allowed", f"You have no role in {left} or {right}."
            )
        differences = status.diff(services, app, left, right, compare_secrets=user.admin)
    by_name = {e.name: e for e in environments}
    events = []
    if seen:
        with services.store.transaction() as connection:
            events = [
                e
                for e in audit.events(connection, limit=2000)
                if e.subject.split("/")[0] == app and e.subject.partition("/")[2] in seen
            ][-50:]
    return render(
        "app.html",
        **page_values(
            request,
            title=app,
            section="board",
            app=app,
            board=found,
            offer_url=_offer_url,
            environments=seen,
            left=left or (seen[0] if seen else None),
            right=right or (seen[1] if len(seen) > 1 else None),
            differences=differences,
            histories=[(e, status.history(services, app, e, 20)) for e in seen],
            variables=[(e, variables.list_variables(services, app, e)) for e in seen],
            settable=[e for e in seen if user.can(Permission.SET_VARIABLES, e)],
            access=viewers.access_table(services, app, seen),
            access_settable=[e for e in seen if user.can(Permission.SET_ACCESS, e)],
            usage=viewers.usage_of(services, app, seen),
            usage_days=viewers.DAYS,
            deploy_envs=[
                e
                for e in seen
                if user.can(Permission.DEPLOY, e) and by_name[e].policy.direct_deploys
            ],
            bundles=bundles[:20],
            events=list(reversed(events)),
            runs=runs_section(context, user, app, seen),
        ),
    )


@router.get("/apps/{app}/diff", openapi_extra=needs(Permission.VIEW, "query:left", "query:right"))
def diff_page(request: Request, app: str, left: str, right: str) -> Response:
    return RedirectResponse(f"/apps/{app}?left={left}&right={right}#compare", status_code=303)


@router.get("/apps/{app}/logs", openapi_extra=needs(Permission.VIEW, "query:environment"))
def logs_page(
    request: Request, context: Context, app: str, environment: str, release: int | None = None
) -> Response:
    try:
        text = _log_text(context, app, environment, release)
    except ConveyorError as exc:
        return page_error(request, 404, "No output", str(exc))
    follow = None if release else f"/events/logs/{app}/{environment}"
    return render(
        "logs.html",
        **page_values(
            request,
            title=f"{app} output",
            section="board",
            app=app,
            environment=environment,
            release=release,
            text=text[1],
            follow=follow,
        ),
    )


def _log_text(context: Any, app: str, environment: str, release: int | None) -> tuple[int, str]:
    with context.services.store.transaction() as connection:
        if release is None:
            live = releases.live_release(connection, app, environment)
            if live is None:
                raise ConveyorError(f"nothing of {app} is live in {environment}")
            release = live.id
        found = releases.get_release(connection, release)
        if (found.app, found.environment) != (app, environment):
            raise ConveyorError(f"release {release} is not of {app} in {environment}")
    offset, text = context.services.runtime.read_log(release, 0)
    return offset, text[-200_000:]


@router.get(
    "/events/logs/{app}/{environment}", openapi_extra=needs(Permission.VIEW, "path:environment")
)
async def log_events(
    request: Request, context: Context, app: str, environment: str
) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            offset, _ = await run_in_threadpool(_log_text, context, app, environment, None)
        except ConveyorError as exc:  # nothing live (any more): say so, and do not come back
            yield event("append", str(exc))
            yield event("done", "")
            return
        async for _ in while_allowed(request):
            with context.services.store.transaction() as connection:
                live = releases.live_release(connection, app, environment)
            if live is not None:
                offset, text = await run_in_threadpool(
                    context.services.runtime.read_log, live.id, offset
                )
                for line in text.splitlines():
                    yield event("append", line)
            yield ": still here\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")


# --- actions -------------------------------------------------------------------------------------


def _begin(request: Request, context: ApiContext, app: str, work: Any) -> Response:
    """Start ``work`` (a release) in the background: its operation's page, or why not."""
    try:
        begun = context.background.submit(work)
    except ConveyorError as exc:
        return _refused(request, exc)
    return _started(request, begun, app)


def _started(request: Request, begun: Any, app: str) -> Response:
    if begun.operation_id is None:
        return redirect_with_notice(request, f"/apps/{app}", str(begun.result))
    return RedirectResponse(f"/operations/{begun.operation_id}", status_code=303)


def _refused(request: Request, exc: ConveyorError) -> Response:
    return page_error(request, 403 if "Policy" in type(exc).__name__ else 409, "Refused", str(exc))


@router.post("/apps/{app}/promote", openapi_extra=needs(Permission.PROMOTE, "promotion"))
def promote(
    request: Request,
    context: Context,
    user: CurrentUser,
    checked: CheckedEnvironments,
    app: str,
    bundle: Annotated[str, Form()] = "",
) -> Response:
    [target] = checked
    return _begin(
        request,
        context,
        app,
        lambda started: pipeline.promote(
            context.services, app, user.name, target, bundle or None, started
        ),
    )


@router.post(
    "/apps/{app}/environments/{environment}/approve",
    openapi_extra=needs(Permission.APPROVE, "path:environment"),
)
def approve(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    environment: str,
    bundle: Annotated[str, Form()] = "",
) -> Response:
    try:
        approved = pipeline.approve(
            context.services, app, environment, bundle or None, user.name, "approved in the console"
        )
    except ConveyorError as exc:
        return _refused(request, exc)
    notice = f"Approved bundle {approved[:10]} of {app} for {environment}."
    return redirect_with_notice(request, "/", notice)


@router.post(
    "/apps/{app}/environments/{environment}/rollback",
    openapi_extra=needs(Permission.ROLL_BACK, "path:environment"),
)
def rollback(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    environment: str,
    release: Annotated[str, Form()] = "",
) -> Response:
    """Back to the bundle of ``release`` (the one the board offered), or the previous one."""
    back_to = int(release) if release.isdigit() else None
    return _begin(
        request,
        context,
        app,
        lambda started: pipeline.rollback(
            context.services, app, environment, user.name, back_to, started
        ),
    )


@router.post(
    "/apps/{app}/environments/{environment}/deploy",
    openapi_extra=needs(Permission.DEPLOY, "path:environment"),
)
def deploy(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    environment: str,
    bundle: Annotated[str, Form()],
) -> Response:
    return _begin(
        request,
        context,
        app,
        lambda started: pipeline.deploy(
            context.services, app, bundle, environment, user.name, started
        ),
    )


@router.post(
    "/apps/{app}/environments/{environment}/variables",
    openapi_extra=needs(Permission.SET_VARIABLES, "path:environment"),
)
def set_variable(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    environment: str,
    name: Annotated[str, Form()],
    value: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
) -> Response:
    try:
        variables.set_variable(
            context.services, app, environment, name, value, secret=bool(secret), actor=user.name
        )
    except ConveyorError as exc:
        return page_error(request, 422, "Not set", str(exc))
    notice = f"Set {name} in {environment}; it applies from the next release."
    return redirect_with_notice(request, f"/apps/{app}", notice)


@router.post(
    "/apps/{app}/environments/{environment}/access",
    openapi_extra=needs(Permission.SET_ACCESS, "path:environment"),
)
def set_access(
    request: Request,
    context: Context,
    user: CurrentUser,
    app: str,
    environment: str,
    access: Annotated[str, Form()],
) -> Response:
    try:
        chosen = parse_access(access)
        viewers.set_access(context.services, app, environment, chosen, user.name)
    except ConveyorError as exc:
        return page_error(request, 422, "Not set", str(exc))
    notice = f"Viewers of {app} in {environment}: {chosen.describe()}."
    return redirect_with_notice(request, f"/apps/{app}", notice)


# --- operations ----------------------------------------------------------------------------------


@router.get(
    "/operations/{operation_id}", openapi_extra=needs(Permission.VIEW, "operation:operation_id")
)
def operation_page(request: Request, context: Context, operation_id: int) -> Response:
    engine = context.services.store.engine
    operation = operations.get_operation(engine, operation_id)
    found, earlier = operations.recent_log(engine, operation_id, SHOWN_LINES)
    return render(
        "operation.html",
        **page_values(
            request,
            title=f"Operation {operation_id}",
            section="board",
            operation=operation,
            lines=[line for _, _, line in found],
            earlier=earlier,
            shown=SHOWN_LINES,
            # The stream goes on from the last line shown here.
            after=found[-1][0] if found else 0,
        ),
    )


@router.get(
    "/operations/{operation_id}/log.txt",
    openapi_extra=needs(Permission.VIEW, "operation:operation_id"),
)
def operation_log_text(context: Context, operation_id: int) -> Response:
    """The operation's whole log as text (its page shows the last lines)."""
    engine = context.services.store.engine
    operations.get_operation(engine, operation_id)  # a missing one is a 404
    return StreamingResponse(
        log_text(lambda after: operations.log_lines(engine, operation_id, after)),
        media_type="text/plain; charset=utf-8",
    )


@router.get(
    "/events/operations/{operation_id}",
    openapi_extra=needs(Permission.VIEW, "operation:operation_id"),
)
async def operation_events(
    request: Request, context: Context, operation_id: int, after: LineId = 0
) -> StreamingResponse:
    """The operation's log from after line ``after`` (what the page showed already; a
    reconnecting browser's Last-Event-ID goes further), then its end."""
    engine = context.services.store.engine
    after = resumed_after(request, after)

    def look(seen: int) -> tuple[list[tuple[int, Any, str]], str | None]:
        operation = operations.get_operation(engine, operation_id)  # its state, then its lines
        found = operations.log_lines(engine, operation_id, seen)
        if operation.state is OperationState.RUNNING:
            return found, None
        result = f": {operation.result}" if operation.result else ""
        return found, f"{operation.state}{result}"

    return StreamingResponse(follow_log(request, after, look), media_type="text/event-stream")
