"""The console's pages for admins: users and their roles, tokens, the environments and their
policies (read-only: they change through the environments file), and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from conveyor.api.context import Context
from conveyor.api.permissions import CurrentUser, needs
from conveyor.console.session import (
    ConsoleRoute,
    page_error,
    page_values,
    redirect_with_notice,
)
from conveyor.console.templates import render
from conveyor.domain.access import Permission, User, parse_grant
from conveyor.errors import ConveyorError
from conveyor.services import environments, sign_in, tokens, users
from conveyor.storage import audit

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False, prefix="/admin")


@router.get("/users", openapi_extra=needs(Permission.ADMIN))
def users_page(request: Request, context: Context) -> Response:
    return render(
        "admin_users.html",
        **page_values(
            request,
            title="Users",
            section="users",
            users=users.list_users(context.services),
        ),
    )


@router.post("/users", openapi_extra=needs(Permission.ADMIN))
def add_user(
    request: Request,
    context: Context,
    user: CurrentUser,
    name: Annotated[str, Form()],
    roles: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    admin: Annotated[str, Form()] = "",
) -> Response:
    try:
        grants = [parse_grant(r) for r in roles.split()] if roles.strip() else None
        users.add_user(context.services, name, grants, admin=bool(admin), actor=user.name)
        if password:
            sign_in.set_password(context.services, user, name, password)
    except ConveyorError as exc:
        return page_error(request, 422, "Not added", str(exc))
    return redirect_with_notice(request, "/admin/users", f"Added {name}.")


@router.post("/users/{name}/roles", openapi_extra=needs(Permission.ADMIN))
def change_role(
    request: Request,
    context: Context,
    user: CurrentUser,
    name: str,
    role: Annotated[str, Form()],
    change: Annotated[str, Form()] = "grant",
) -> Response:
    try:
        held, admin = (None, True) if role.strip() == "admin" else (parse_grant(role), False)
        act = users.revoke if change == "revoke" else users.grant
        act(context.services, name, held, admin=admin, actor=user.name)
    except ConveyorError as exc:
        return page_error(request, 422, "Not changed", str(exc))
    done = "no longer" if change == "revoke" else "now"
    return redirect_with_notice(request, "/admin/users", f"{name} is {done} {role}.")


@router.post("/users/{name}/disable", openapi_extra=needs(Permission.ADMIN))
def disable_user(request: Request, context: Context, user: CurrentUser, name: str) -> Response:
    try:
        users.disable(context.services, name, actor=user.name)
    except ConveyorError as exc:
        return page_error(request, 409, "Not disabled", str(exc))
    return redirect_with_notice(request, "/admin/users", f"Disabled {name}.")


@router.get("/tokens", openapi_extra=needs(Permission.ADMIN))
def tokens_page(request: Request, context: Context, user: CurrentUser) -> Response:
    return _tokens(request, context, user, created=None)


def _tokens(
    request: Request, context: Context, user: User, created: dict[str, object] | None
) -> Response:
    return render(
        "admin_tokens.html",
        **page_values(
            request,
            title="Tokens",
            section="tokens",
            tokens=tokens.list_tokens(context.services, user),
            created=created,
        ),
    )


@router.post("/tokens", openapi_extra=needs(Permission.ADMIN))
def create_token(
    request: Request,
    context: Context,
    user: CurrentUser,
    for_user: Annotated[str, Form(alias="user")],
    days: Annotated[int, Form()] = 90,
) -> Response:
    try:
        record, token = tokens.create_token(context.services, user, for_user, days)
    except ConveyorError as exc:
        return page_error(request, 422, "Not created", str(exc))
    # Shown in this answer only: the server keeps its HMAC.
    return _tokens(request, context, user, {"id": record.id, "user": record.user, "token": token})


@router.post("/tokens/{token_id}/revoke", openapi_extra=needs(Permission.ADMIN))
def revoke_token(request: Request, context: Context, user: CurrentUser, token_id: int) -> Response:
    try:
        tokens.revoke_token(context.services, user, token_id)
    except ConveyorError as exc:
        return page_error(request, 409, "Not revoked", str(exc))
    return RedirectResponse("/admin/tokens", status_code=303)


@router.get("/environments", openapi_extra=needs(Permission.ADMIN))
def environments_page(request: Request, context: Context) -> Response:
    found = environments.state(context.services)
    return render(
        "admin_environments.html",
        **page_values(
            request,
            title="Environments",
            section="environments",
            environments=found.environments,
            managed_by=context.environments_file or found.managed_by,
            urls=context.urls,
            isolation=context.services.runtime.isolation(),
        ),
    )


def _audit_page(request: Request, context: Context, verify: bool) -> Response:
    with context.services.store.transaction() as connection:
        events = audit.events(connection, limit=200)
        verification = audit.verify(connection) if verify else None
        count, _ = audit.head(connection)
    return render(
        "admin_audit.html",
        **page_values(
            request,
            title="Audit log",
            section="audit",
            events=list(reversed(events)),
            verification=verification,
            count=count,
        ),
    )


@router.get("/audit", openapi_extra=needs(Permission.ADMIN))
def audit_page(request: Request, context: Context) -> Response:
    return _audit_page(request, context, verify=False)


@router.post("/audit/verify", openapi_extra=needs(Permission.ADMIN))
def audit_verify(request: Request, context: Context) -> Response:
    return _audit_page(request, context, verify=True)
