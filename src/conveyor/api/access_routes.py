"""Routes for who may do what: the signed-in user, users and roles, tokens, the audit log and
the secrets key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.limits import (
    LIST_LENGTH,
    MAX_ID,
    NAME_LENGTH,
    Id,
    Limit,
    PathName,
)
from conveyor.api.permissions import AuthorizedRoute, CurrentToken, CurrentUser, needs
from conveyor.api.shapes import token_json, user_json
from conveyor.domain.access import Grant, Permission, parse_grant
from conveyor.domain.audit import AuditEvent
from conveyor.services import secrets, sign_in, tokens, users
from conveyor.storage import audit

router = APIRouter(route_class=AuthorizedRoute)

_ADMIN_ROLE = "admin"


Name = Annotated[str, Field(max_length=NAME_LENGTH)]


class UserBody(BaseModel):
    name: Name
    roles: list[Name] | None = Field(
        None,
        max_length=LIST_LENGTH,
        description="ENV:ROLE each; leave out for each environment's default roles",
    )
    admin: bool = False


class RoleBody(BaseModel):
    role: str = Field(max_length=NAME_LENGTH, description="ENV:ROLE (e.g. prod:approver), or admin")


class TokenBody(BaseModel):
    expires_days: int | None = Field(
        None,
        ge=0,
        le=tokens.MAX_EXPIRY_DAYS,
        description=f"default {tokens.DEFAULT_EXPIRY_DAYS}; 0: never",
    )


# --- users -------------------------------------------------------------------------------------


@router.get("/me", tags=["users"], openapi_extra=needs(Permission.SIGNED_IN))
def who_am_i(user: CurrentUser) -> dict[str, Any]:
    return user_json(user)


@router.get("/users", tags=["users"], openapi_extra=needs(Permission.ADMIN))
def list_users(context: Context) -> list[dict[str, Any]]:
    return [user_json(u) for u in users.list_users(context.services)]


@router.post("/users", tags=["users"], status_code=201, openapi_extra=needs(Permission.ADMIN))
def add_user(context: Context, user: CurrentUser, body: UserBody) -> dict[str, Any]:
    grants = None if body.roles is None else [parse_grant(r) for r in body.roles]
    added = users.add_user(context.services, body.name, grants, admin=body.admin, actor=user.name)
    return user_json(added)


@router.post("/users/{name}/roles", tags=["users"], openapi_extra=needs(Permission.ADMIN))
def grant_role(
    context: Context, user: CurrentUser, name: PathName, body: RoleBody
) -> dict[str, Any]:
    held, admin = _role(body.role)
    return user_json(users.grant(context.services, name, held, admin=admin, actor=user.name))


@router.delete("/users/{name}/roles/{role}", tags=["users"], openapi_extra=needs(Permission.ADMIN))
def revoke_role(
    context: Context, user: CurrentUser, name: PathName, role: PathName
) -> dict[str, Any]:
    held, admin = _role(role)
    return user_json(users.revoke(context.services, name, held, admin=admin, actor=user.name))


@router.post("/users/{name}/disable", tags=["users"], openapi_extra=needs(Permission.ADMIN))
def disable_user(context: Context, user: CurrentUser, name: PathName) -> dict[str, Any]:
    return user_json(users.disable(context.services, name, actor=user.name))


class PasswordBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class GroupsBody(BaseModel):
    groups: list[Name] = Field(max_length=LIST_LENGTH)


@router.put(
    "/users/{name}/password",
    tags=["users"],
    openapi_extra=needs(Permission.SELF_OR_ADMIN, "user:name"),
)
def set_password(
    context: Context, user: CurrentUser, name: PathName, body: PasswordBody
) -> dict[str, Any]:
    """Set a console password (one's own; an admin anyone's); the user's sessions end."""
    sign_in.set_password(context.services, user, name, body.password)
    return {"name": name, "password": "set"}


@router.put("/users/{name}/groups", tags=["users"], openapi_extra=needs(Permission.ADMIN))
def set_groups(
    context: Context, user: CurrentUser, name: PathName, body: GroupsBody
) -> dict[str, Any]:
    """The groups a user is in (viewer access may name groups)."""
    return user_json(users.set_groups(context.services, name, body.groups, actor=user.name))


def _role(text: str) -> tuple[Grant | None, bool]:
    return (None, True) if text.strip() == _ADMIN_ROLE else (parse_grant(text), False)


# --- tokens ------------------------------------------------------------------------------------


@router.post("/tokens", tags=["tokens"], status_code=201, openapi_extra=needs(Permission.SIGNED_IN))
def create_own_token(
    context: Context, user: CurrentUser, presented: CurrentToken, body: TokenBody
) -> dict[str, Any]:
    """A token for yourself, expiring no later than the token you ask with; shown once,
    stored only as its HMAC."""
    record, token = tokens.create_token(context.services, user, None, body.expires_days, presented)
    return {**token_json(record), "token": token}


@router.post(
    "/users/{name}/tokens",
    tags=["tokens"],
    status_code=201,
    openapi_extra=needs(Permission.SELF_OR_ADMIN, "user:name"),
)
def create_token(
    context: Context,
    user: CurrentUser,
    presented: CurrentToken,
    name: PathName,
    body: TokenBody,
) -> dict[str, Any]:
    """A token for the user named; for anyone but yourself, only an admin."""
    record, token = tokens.create_token(context.services, user, name, body.expires_days, presented)
    return {**token_json(record), "token": token}


@router.get(
    "/tokens",
    tags=["tokens"],
    openapi_extra=needs(Permission.SIGNED_IN, note="one's own tokens; an admin sees all"),
)
def list_tokens(context: Context, user: CurrentUser) -> list[dict[str, Any]]:
    return [token_json(t) for t in tokens.list_tokens(context.services, user)]


@router.delete(
    "/tokens/{token_id}",
    tags=["tokens"],
    openapi_extra=needs(Permission.SIGNED_IN, note="one's own tokens; an admin any"),
)
def revoke_token(context: Context, user: CurrentUser, token_id: Id) -> dict[str, Any]:
    return token_json(tokens.revoke_token(context.services, user, token_id))


# --- audit and keys ----------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], openapi_extra=needs(Permission.ADMIN))
def audit_events(context: Context, limit: Limit = 100) -> list[dict[str, Any]]:
    with context.services.store.transaction() as connection:
        found = audit.events(connection, limit=limit)
        keyed_from = audit.keyed_from(connection)
    return [_event_json(e, keyed_from) for e in found]


@router.get("/audit/verify", tags=["audit"], openapi_extra=needs(Permission.ADMIN))
def audit_verify(context: Context) -> dict[str, Any]:
    with context.services.store.transaction() as connection:
        result = audit.verify(connection)
        count, _ = audit.head(connection)
        keyed_from = audit.keyed_from(connection)
    return {
        "intact": not result.problems,
        "events": count,
        "unkeyed": result.unkeyed,
        "keyed_from": keyed_from,
        "problems": result.problems,
    }


class JsonLines(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/audit/export",
    tags=["audit"],
    response_class=JsonLines,
    openapi_extra=needs(Permission.ADMIN),
)
def audit_export(context: Context, since: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> JsonLines:
    """Events after ``since`` as JSON lines, each with its MAC, for another store."""
    with context.services.store.transaction() as connection:
        found = audit.events(connection, since=since)
        keyed_from = audit.keyed_from(connection)

    def lines() -> Iterator[str]:
        for event in found:
            yield json.dumps(_event_json(event, keyed_from), sort_keys=True) + "\n"

    return JsonLines(lines())


def _event_json(event: AuditEvent, keyed_from: int) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "details": dict(event.details),
        "prev": event.prev_hash,
        "mac": event.hash,
        "keyed": event.seq >= keyed_from,
    }


@router.post("/secrets/rotate-key", tags=["secrets"], openapi_extra=needs(Permission.ADMIN))
def rotate_key(context: Context, user: CurrentUser) -> dict[str, Any]:
    """Encrypt every secret with a new key, in one transaction; then drop the old keys."""
    rotation = secrets.rotate_key(context.services, user.name)
    return {"key": rotation.key, "secrets": rotation.resealed, "dropped": rotation.dropped}
