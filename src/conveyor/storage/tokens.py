"""API tokens. The database keeps only an HMAC of each token (under a key from the keys file,
outside the database) and a MAC binding its row together: a stolen database gives no token,
and a database someone can write still gives none (a row they add or change does not match).
A token acts as its owner (a user), may expire, and can be revoked; it is shown once, when it is
created."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, RowMapping, and_, func, insert, select, update

from conveyor.storage import schema
from conveyor.storage.keyring import Keyring
from conveyor.storage.store import keys_of, new_row_id, now

_T = schema.api_tokens
PREFIX = "cvt_"
#: What tokens made before the upgrade to keyed digests were stored as (their SHA-256);
#: the upgrade keys these digests too (storage/at_rest.py).
LEGACY = "sha256:"


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
    #: False when the row no longer matches its MAC: it was changed in the database.
    intact: bool = True


def legacy_digest(token: str) -> str:
    return LEGACY + hashlib.sha256(token.encode()).hexdigest()


def count_tokens(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(_T)).scalar_one())


def create_token(
    connection: Connection, user: str, *, by: str, expires_at: str | None = None
) -> tuple[int, str]:
    """Create a token for ``user``; return its id and the token (only its HMAC is kept)."""
    keys = keys_of(connection)
    token = PREFIX + secrets.token_urlsafe(32)
    digest = keys.token_digest(token)
    key = connection.execute(
        insert(_T).values(
            digest=digest,
            owner=user,
            created_at=now(),
            created_by=by,
            expires_at=expires_at,
            mac=keys.token_mac(digest, user, expires_at, None),
        )
    ).inserted_primary_key
    return new_row_id(key), token


def find(connection: Connection, token: str) -> Token | None:
    """The token record of ``token``, or None when it is not a token of this server."""
    keys = keys_of(connection)
    candidates = [keys.token_digest(token), keys.token_digest(legacy_digest(token))]
    row = connection.execute(select(_T).where(_T.c.digest.in_(candidates))).mappings().first()
    return None if row is None else _token(row, keys)


def get_token(connection: Connection, token_id: int) -> Token | None:
    row = connection.execute(select(_T).where(_T.c.id == token_id)).mappings().first()
    return None if row is None else _token(row, keys_of(connection))


def list_tokens(connection: Connection, user: str | None = None) -> list[Token]:
    query = select(_T).order_by(_T.c.id)
    if user is not None:
        query = query.where(_T.c.owner == user)
    keys = keys_of(connection)
    return [_token(row, keys) for row in connection.execute(query).mappings()]


def revoke(connection: Connection, token_id: int) -> bool:
    """Revoke a token; True when it was not revoked yet."""
    keys = keys_of(connection)
    row = (
        connection.execute(select(_T).where(and_(_T.c.id == token_id, _T.c.revoked_at.is_(None))))
        .mappings()
        .first()
    )
    if row is None:
        return False
    stamp = now()
    connection.execute(
        update(_T)
        .where(_T.c.id == token_id)
        .values(
            revoked_at=stamp,
            mac=keys.token_mac(row["digest"], row["owner"], row["expires_at"], stamp),
        )
    )
    return True


def touch(connection: Connection, token_id: int, at: str) -> None:
    connection.execute(update(_T).where(_T.c.id == token_id).values(last_used_at=at))


def seal_legacy(connection: Connection, expires_at: str) -> int:
    """Key the digests of tokens made before keyed digests, MAC their rows, and let them
    expire at ``expires_at`` at the latest; return how many there were."""
    keys = keys_of(connection)
    rows = connection.execute(select(_T).where(_T.c.mac.is_(None))).mappings().all()
    for row in rows:
        digest = keys.token_digest(LEGACY + row["digest"])
        expiry = min(row["expires_at"] or expires_at, expires_at)
        connection.execute(
            update(_T)
            .where(_T.c.id == row["id"])
            .values(
                digest=digest,
                expires_at=expiry,
                mac=keys.token_mac(digest, row["owner"], expiry, row["revoked_at"]),
            )
        )
    return len(rows)


def _token(row: RowMapping, keys: Keyring) -> Token:
    expected = keys.token_mac(row["digest"], row["owner"], row["expires_at"], row["revoked_at"])
    return Token(
        id=int(row["id"]),
        user=str(row["owner"]),
        created_at=str(row["created_at"]),
        created_by=str(row["created_by"]),
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        intact=row["mac"] is not None and row["mac"] == expected,
    )
