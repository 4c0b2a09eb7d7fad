"""API tokens, kept only as their sha256: a stolen database does not give access. A token acts
as its owner (a user), may expire, and can be revoked; it is never stored or shown again after
it is created."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, RowMapping, and_, func, insert, select, update

from conveyor.storage import schema
from conveyor.storage.store import new_row_id, now

_T = schema.api_tokens
PREFIX = "cvt_"


@dataclass(frozen=True)
class Token:
    """What is known of a token: never the token itself."""

    id: int
    user: str
    created_at: str
    created_by: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def count_tokens(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(_T)).scalar_one())


def create_token(
    connection: Connection, user: str, *, by: str, expires_at: str | None = None
) -> tuple[int, str]:
    """Create a token for ``user``; return its id and the token (only its digest is kept)."""
    token = PREFIX + secrets.token_urlsafe(32)
    key = connection.execute(
        insert(_T).values(
            digest=digest(token),
            owner=user,
            created_at=now(),
            created_by=by,
            expires_at=expires_at,
        )
    ).inserted_primary_key
    return new_row_id(key), token


def find(connection: Connection, token: str) -> Token | None:
    """The token record of ``token``, or None when it is not a token of this server."""
    row = connection.execute(select(_T).where(_T.c.digest == digest(token))).mappings().first()
    return None if row is None else _token(row)


def get_token(connection: Connection, token_id: int) -> Token | None:
    row = connection.execute(select(_T).where(_T.c.id == token_id)).mappings().first()
    return None if row is None else _token(row)


def list_tokens(connection: Connection, user: str | None = None) -> list[Token]:
    query = select(_T).order_by(_T.c.id)
    if user is not None:
        query = query.where(_T.c.owner == user)
    return [_token(row) for row in connection.execute(query).mappings()]


def revoke(connection: Connection, token_id: int) -> bool:
    """Revoke a token; True when it was not revoked yet."""
    result = connection.execute(
        update(_T)
        .where(and_(_T.c.id == token_id, _T.c.revoked_at.is_(None)))
        .values(revoked_at=now())
    )
    return bool(result.rowcount)


def touch(connection: Connection, token_id: int, at: str) -> None:
    connection.execute(update(_T).where(_T.c.id == token_id).values(last_used_at=at))


def _token(row: RowMapping) -> Token:
    return Token(
        id=int(row["id"]),
        user=str(row["owner"]),
        created_at=str(row["created_at"]),
        created_by=str(row["created_by"]),
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )
