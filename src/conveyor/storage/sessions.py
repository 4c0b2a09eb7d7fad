"""Console sessions. The cookie's value is shown to the browser once; the database keeps only
its HMAC (under the keys file's token key, as for API tokens), so neither a copy of the
database nor someone who can write it holds or makes a working session."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from conveyor.storage import schema
from conveyor.storage.store import keys_of, now

_S = schema.sessions


@dataclass(frozen=True)
class Session:
    id: int
    user: str
    csrf: str
    expires_at: str
    via: str


def create(connection: Connection, user: str, *, expires_at: str, via: str) -> tuple[Session, str]:
    """A new session for ``user``; returns it and the cookie's value."""
    value = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    keys = keys_of(connection)
    digest = keys.token_digest("session:" + value)
    key = connection.execute(
        insert(_S).values(
            digest=digest,
            user=user,
            csrf=csrf,
            created_at=now(),
            expires_at=expires_at,
            via=via,
            mac=keys.token_mac("session", digest, user, csrf, expires_at),
        )
    ).inserted_primary_key
    assert key is not None
    return Session(int(key[0]), user, csrf, expires_at, via), value


def find(connection: Connection, value: str) -> Session | None:
    """The session a cookie's value opens, expired or not; None when it is no session (or
    its row was changed by hand: another user, a later expiry)."""
    keys = keys_of(connection)
    digest = keys.token_digest("session:" + value)
    row = connection.execute(select(_S).where(_S.c.digest == digest)).mappings().first()
    if row is None:
        return None
    expected = keys.token_mac("session", digest, row["user"], row["csrf"], row["expires_at"])
    if not hmac.compare_digest(row["mac"], expected):
        return None
    return Session(row["id"], row["user"], row["csrf"], row["expires_at"], row["via"])


def end(connection: Connection, value: str) -> None:
    digest = keys_of(connection).token_digest("session:" + value)
    connection.execute(delete(_S).where(_S.c.digest == digest))


def end_all(connection: Connection, user: str) -> int:
    """End every session of ``user`` (disabled, or their password changed)."""
    return int(connection.execute(delete(_S).where(_S.c.user == user)).rowcount)


def remove_expired(connection: Connection) -> int:
    return int(connection.execute(delete(_S).where(_S.c.expires_at <= now())).rowcount)


def count(connection: Connection, user: str) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(_S).where(_S.c.user == user)
        ).scalar_one()
    )
