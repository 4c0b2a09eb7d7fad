"""Users and their roles: add, grant, revoke, disable, list. Only admins reach these (the API
checks that); the rules here keep the server manageable: there is always an active admin, and
a role is granted only in an environment that exists."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from conveyor.domain.access import Grant, User, check_user_name
from conveyor.errors import Conflict, InvalidInput, NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, sessions
from conveyor.storage import users as stored


def list_users(services: Services) -> list[User]:
    with services.store.transaction() as connection:
        return stored.list_users(connection)


def get_user(services: Services, name: str) -> User:
    with services.store.transaction() as connection:
        return _require(connection, name)


def add_user(
    services: Services, name: str, grants: Iterable[Grant] | None, *, admin: bool, actor: str
) -> User:
    """Add a user with ``grants`` (None: each environment's default roles for new users)."""
    check_user_name(name)
    with services.store.transaction() as connection:
        if stored.get_user(connection, name) is not None:
            raise Conflict(f"there is already a user {name!r}; `conveyor users grant` adds roles")
        environments = catalog.list_environments(connection)
        given = (
            sorted(set(grants))
            if grants is not None
            else [Grant(e.name, role) for e in environments for role in e.roles_for_new_users]
        )
        _require_environments(connection, given)
        stored.add_user(connection, name, admin=admin, by=actor)
        for held in given:
            stored.grant(connection, name, held, by=actor)
        audit.record(
            connection,
            actor,
            "user.add",
            name,
            {"admin": admin, "roles": [str(g) for g in given]},
        )
        return _require(connection, name)


def grant(services: Services, name: str, held: Grant | None, *, admin: bool, actor: str) -> User:
    """Give a role in an environment (``held``), or admin rights (``admin=True``)."""
    with services.store.transaction() as connection:
        user = _require(connection, name)
        if admin:
            if user.admin:
                raise Conflict(f"{name} is an admin already")
            stored.set_admin(connection, name, True)
            audit.record(connection, actor, "user.grant", name, {"role": "admin"})
        else:
            assert held is not None
            _require_environments(connection, [held])
            if not stored.grant(connection, name, held, by=actor):
                raise Conflict(f"{name} is {held.role} in {held.environment} already")
            audit.record(connection, actor, "user.grant", name, {"role": str(held)})
        return _require(connection, name)


def revoke(services: Services, name: str, held: Grant | None, *, admin: bool, actor: str) -> User:
    """Take away a role in an environment (``held``), or admin rights (``admin=True``)."""
    with services.store.transaction() as connection:
        user = _require(connection, name)
        if admin:
            if not user.admin:
                raise Conflict(f"{name} is not an admin")
            _keep_an_admin(connection, user, "stop being an admin")
            stored.set_admin(connection, name, False)
            audit.record(connection, actor, "user.revoke", name, {"role": "admin"})
        else:
            assert held is not None
            if not stored.revoke(connection, name, held):
                have = ", ".join(sorted(str(g) for g in user.grants)) or "no roles"
                raise NotFound(f"{name} is not {held.role} in {held.environment} (has {have})")
            audit.record(connection, actor, "user.revoke", name, {"role": str(held)})
        return _require(connection, name)


def disable(services: Services, name: str, *, actor: str) -> User:
    """A disabled user's tokens stop working at once; their history stays."""
    with services.store.transaction() as connection:
        user = _require(connection, name)
        if user.disabled:
            raise Conflict(f"{name} is disabled already")
        _keep_an_admin(connection, user, "be disabled")
        stored.set_disabled(connection, name, True)
        ended = sessions.end_all(connection, name)
        audit.record(connection, actor, "user.disable", name, {"sessions_ended": ended})
        return _require(connection, name)


def set_groups(services: Services, name: str, groups: Iterable[str], *, actor: str) -> User:
    """Put ``name`` in exactly these groups (viewer access may name groups)."""
    chosen = sorted(set(groups))
    for group in chosen:
        check_user_name(group)
    with services.store.transaction() as connection:
        _require(connection, name)
        stored.set_groups(connection, name, chosen)
        audit.record(connection, actor, "user.groups", name, {"groups": chosen})
        return _require(connection, name)


def _require(connection: Connection, name: str) -> User:
    user = stored.get_user(connection, name)
    if user is None:
        raise NotFound(f"there is no user {name!r}; `conveyor users list` shows them")
    return user


def _require_environments(connection: Connection, grants: Iterable[Grant]) -> None:
    known = {e.name for e in catalog.list_environments(connection)}
    for held in grants:
        if held.environment not in known:
            raise InvalidInput(
                f"there is no environment {held.environment!r} to give {held.role} in "
                f"(environments: {', '.join(sorted(known))})"
            )


def _keep_an_admin(connection: Connection, user: User, change: str) -> None:
    if user.admin and not user.disabled and stored.count_active_admins(connection) <= 1:
        raise Conflict(
            f"{user.name} is the only active admin and cannot {change}: make another user an "
            f"admin first (`conveyor users grant NAME admin`)"
        )
