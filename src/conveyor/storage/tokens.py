"""API tokens, kept only as their sha256: a stolen database does not give access."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, func, insert, select

from conveyor.storage import schema
from conveyor.storage.store import now

_T = schema.api_tokens
PREFIX = "cvt_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def count_tokens(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(_T)).scalar_one())


def create_token(connection: Connection, owner: str) -> str:
    """Create a token for ``owner`` and return it; only its digest is stored."""
    token = PREFIX + secrets.token_urlsafe(32)
    connection.execute(insert(_T).values(digest=digest(token), owner=owner, created_at=now()))
    return token


def owner_of(connection: Connection, token: str) -> str | None:
    """Who the token belongs to, or None when it is not a known token."""
    row = connection.execute(select(_T.c.owner).where(_T.c.digest == digest(token))).first()
    return None if row is None else str(row[0])
