"""Users and their roles per environment in the metadata database."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from conveyor.domain.access import Grant, Role, User
from conveyor.storage import schema
from conveyor.storage.store import keys_of, now

_U = schema.users
_G = schema.grants


def get_user(connection: Connection, name: str) -> User | None:
    row = connection.execute(select(_U).where(_U.c.name == name)).mappings().first()
    if row is None:
        return None
    return User(
        row["name"],
        bool(row["admin"]),
        bool(row["disabled"]),
        _grants(connection, name),
        frozenset(json.loads(row["groups"] or "[]")),
        row["password_hash"] is not None,
    )


@dataclass(frozen=True)
class Credentials:
    """How a user signs in to the console. ``intact``: the row's MAC matches (a hash or a
    provider account written into the database by hand does not)."""

    password_hash: str | None
    oidc_subject: str | None
    intact: bool


def credentials(connection: Connection, name: str) -> Credentials:
    row = (
        connection.execute(
            select(_U.c.password_hash, _U.c.oidc_subject, _U.c.credentials_mac).where(
                _U.c.name == name
            )
        )
        .mappings()
        .first()
    )
    if row is None or (row["password_hash"] is None and row["oidc_subject"] is None):
        return Credentials(None, None, True)
    expected = _credentials_mac(connection, name, row["password_hash"], row["oidc_subject"])
    intact = row["credentials_mac"] is not None and hmac.compare_digest(
        row["credentials_mac"], expected
    )
    return Credentials(row["password_hash"], row["oidc_subject"], intact)


def password_hash(connection: Connection, name: str) -> str | None:
    """The user's password hash, when the row's MAC vouches for it; None otherwise."""
    found = credentials(connection, name)
    return found.password_hash if found.intact else None


def set_password_hash(connection: Connection, name: str, hashed: str | None) -> None:
    subject = credentials(connection, name).oidc_subject
    _set_credentials(connection, name, hashed, subject)


def link_oidc_subject(connection: Connection, name: str, subject: str | None) -> None:
    """Link the user to a provider account (``<issuer> <subject>``), or unlink (None)."""
    hashed = password_hash(connection, name)
    _set_credentials(connection, name, hashed, subject)


def _set_credentials(
    connection: Connection, name: str, hashed: str | None, subject: str | None
) -> None:
    connection.execute(
        update(_U)
        .where(_U.c.name == name)
        .values(
            password_hash=hashed,
            oidc_subject=subject,
            credentials_mac=_credentials_mac(connection, name, hashed, subject),
        )
    )


def _credentials_mac(
    connection: Connection, name: str, hashed: str | None, subject: str | None
) -> str:
    return keys_of(connection).token_mac("credentials", name, hashed, subject)


def set_groups(connection: Connection, name: str, groups: list[str]) -> None:
    connection.execute(
        update(_U).where(_U.c.name == name).values(groups=json.dumps(sorted(set(groups))))
    )


def list_users(connection: Connection) -> list[User]:
    return [
        user
        for name in connection.execute(select(_U.c.name).order_by(_U.c.name)).scalars()
        if (user := get_user(connection, name)) is not None
    ]


def _grants(connection: Connection, name: str) -> frozenset[Grant]:
    rows = connection.execute(select(_G.c.environment, _G.c.role).where(_G.c.user == name))
    return frozenset(Grant(environment, Role(role)) for environment, role in rows)


def add_user(connection: Connection, name: str, *, admin: bool, by: str) -> None:
    connection.execute(
        insert(_U).values(name=name, admin=admin, disabled=False, created_by=by, created_at=now())
    )


def set_admin(connection: Connection, name: str, admin: bool) -> None:
    connection.execute(update(_U).where(_U.c.name == name).values(admin=admin))


def set_disabled(connection: Connection, name: str, disabled: bool) -> None:
    connection.execute(update(_U).where(_U.c.name == name).values(disabled=disabled))


def grant(connection: Connection, name: str, held: Grant, *, by: str) -> bool:
    """Give ``name`` a role in an environment; True when they did not hold it yet."""
    key = and_(_G.c.user == name, _G.c.environment == held.environment, _G.c.role == held.role)
    if connection.execute(select(_G.c.role).where(key)).first() is not None:
        return False
    connection.execute(
        insert(_G).values(
            user=name,
            environment=held.environment,
            role=str(held.role),
            granted_by=by,
            granted_at=now(),
        )
    )
    return True


def revoke(connection: Connection, name: str, held: Grant) -> bool:
    """Take a role away; True when they held it."""
    result = connection.execute(
        delete(_G).where(
            and_(_G.c.user == name, _G.c.environment == held.environment, _G.c.role == held.role)
        )
    )
    return bool(result.rowcount)


def count_active_admins(connection: Connection) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(_U).where(and_(_U.c.admin, ~_U.c.disabled))
        ).scalar_one()
    )


def approvers(connection: Connection, environment: str) -> frozenset[str]:
    """The active users whose approval of a bundle counts for ``environment``: those holding
    the approver role there, and admins (who may do everything)."""
    holding = connection.execute(
        select(_G.c.user)
        .join(_U, _U.c.name == _G.c.user)
        .where(and_(_G.c.environment == environment, _G.c.role == Role.APPROVER, ~_U.c.disabled))
    ).scalars()
    admins = connection.execute(select(_U.c.name).where(and_(_U.c.admin, ~_U.c.disabled)))
    return frozenset(holding) | frozenset(admins.scalars())
