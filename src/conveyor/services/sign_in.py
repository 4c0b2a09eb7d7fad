"""Signing in to the console: passwords (argon2, from `argon2-cffi`), sessions, and the limit
on attempts. Every attempt is counted per user name and per address before its password is
checked (a successful one is taken back); after five within 15 minutes, either is refused for
the rest of the window, whatever the password, so a password cannot be guessed faster than
that. Failed sign-ins are audited, and the moment a key reaches the limit."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, and_, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.domain.access import User
from conveyor.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from conveyor.services.context import Services
from conveyor.storage import audit, schema, sessions
from conveyor.storage import users as stored
from conveyor.storage.sessions import Session
from conveyor.storage.store import now

_HASHER = PasswordHasher()
#: Compared against when the user does not exist, so that takes as long as a wrong password.
_DUMMY = _HASHER.hash("conveyor: no such user")
MIN_PASSWORD = 10
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
SESSION_HOURS = 12


@dataclass(frozen=True)
class SignedIn:
    user: User
    session: Session
    #: The cookie's value; shown to the browser only.
    cookie: str


def set_password(services: Services, actor: User, name: str, password: str) -> None:
    """Set ``name``'s console password (their own, or anyone's for an admin). Their other
    sessions end."""
    if actor.name != name and not actor.admin:
        raise Forbidden(
            f"{actor.name} may only set their own password: for {name} it needs an admin"
        )
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    hashed = _HASHER.hash(password)
    with services.store.transaction() as connection:
        if stored.get_user(connection, name) is None:
            raise NotFound(f"there is no user {name!r}; `conveyor users list` shows them")
        stored.set_password_hash(connection, name, hashed)
        # A new password lifts the user's sign-in limit (the lockout message says to ask).
        user_key = _keys(name, "")[0]
        table = schema.sign_in_failures
        connection.execute(delete(table).where(table.c.key == user_key))
        ended = sessions.end_all(connection, name)
        audit.record(connection, actor.name, "user.password", name, {"sessions_ended": ended})


def sign_in(services: Services, name: str, password: str, address: str) -> SignedIn:
    """A new session for ``name`` when ``password`` is theirs; Unauthorized (one sentence,
    the same whether the user or the password was wrong) otherwise.

    The attempt is counted before the password is checked, atomically, per user name and per
    address: of any number of attempts at once, only the first ``MAX_FAILURES`` in a window
    are checked. A successful sign-in takes its attempt back."""
    keys = _keys(name, address)
    blocked = _count_attempt(services, name, address, keys)
    if blocked is not None:
        raise Forbidden(
            f"too many failed sign-ins: try again in {blocked} minute(s), or ask an admin to "
            "set a new password"
        )
    with services.store.transaction() as connection:
        user = stored.get_user(connection, name)
        hashed = stored.password_hash(connection, name) if user else None
    try:
        _HASHER.verify(hashed or _DUMMY, password)
        valid = hashed is not None and user is not None and not user.disabled
    except (VerificationError, InvalidHashError):
        valid = False
    if not valid or user is None:
        with services.store.transaction() as connection:
            audit.record(
                connection,
                "server",
                "user.sign-in-failed",
                name[:64],
                {"address": address, "why": "wrong user name or password"},
            )
        raise Unauthorized("the user name or the password is wrong")
    return open_session(services, user, "password", address, attempts=keys)


def open_session(
    services: Services,
    user: User,
    via: str,
    address: str,
    attempts: tuple[str, str] | None = None,
) -> SignedIn:
    """A session for ``user``, who proved who they are (a password, an OIDC provider). The
    sign-in's counted ``attempts`` (user key, address key) are taken back: the user's are
    cleared, the address's one less."""
    expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
    table = schema.sign_in_failures
    with services.store.transaction() as connection:
        if attempts is not None:
            user_key, address_key = attempts
            connection.execute(delete(table).where(table.c.key == user_key))
            connection.execute(
                update(table)
                .where(and_(table.c.key == address_key, table.c.failures > 0))
                .values(failures=table.c.failures - 1)
            )
        sessions.remove_expired(connection)
        session, cookie = sessions.create(
            connection, user.name, expires_at=expires.isoformat(timespec="microseconds"), via=via
        )
        audit.record(
            connection, user.name, "user.sign-in", user.name, {"via": via, "address": address}
        )
    return SignedIn(user, session, cookie)


def session_user(services: Services, cookie: str) -> tuple[User, Session] | None:
    """Who a session cookie signs in, or None (unknown, expired, user disabled)."""
    with services.store.transaction() as connection:
        session = sessions.find(connection, cookie)
        if session is None or session.expires_at <= now():
            return None
        user = stored.get_user(connection, session.user)
    if user is None or user.disabled:
        return None
    return user, session


def sign_out(services: Services, cookie: str) -> None:
    with services.store.transaction() as connection:
        session = sessions.find(connection, cookie)
        sessions.end(connection, cookie)
        if session is not None:
            audit.record(connection, session.user, "user.sign-out", session.user, {})


def seal_next(services: Services, url: str) -> str:
    """The seal the proxy puts beside an app's address it sends to sign-in (``next``): the
    console sends people back to an app only when the proxy sent them, not to any address
    a link made elsewhere names."""
    return str(services.store.keys.token_digest("next:" + url))[:24]


def _keys(name: str, address: str) -> tuple[str, str]:
    """The limiter's keys for a user name and an address (an IPv6 address by its /64, which
    one client usually holds whole)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        where = address[:64]
    else:
        where = (
            str(ipaddress.ip_network(f"{parsed}/64", strict=False))
            if parsed.version == 6
            else str(parsed)
        )
    return f"user:{name.lower()[:64]}", f"address:{where}"


def _count_attempt(
    services: Services, name: str, address: str, keys: tuple[str, str]
) -> int | None:
    """Count an attempt for each key (one statement each, so concurrent attempts each see
    their own count); the minutes left in a window over the limit, or None. The attempt that
    reaches the limit is audited; later ones, refused, are not (they would only flood it)."""
    table = schema.sign_in_failures
    moment = datetime.now(UTC)
    cutoff = (moment - WINDOW).isoformat(timespec="microseconds")
    blocked: int | None = None
    reached: list[str] = []
    with services.store.transaction() as connection:
        connection.execute(delete(table).where(table.c.since <= cutoff))  # windows gone by
        for key in keys:
            upsert = _insert_for(connection)(table).values(
                key=key, failures=1, since=moment.isoformat(timespec="microseconds")
            )
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={
                        "failures": case((table.c.since > cutoff, table.c.failures + 1), else_=1),
                        "since": case(
                            (table.c.since > cutoff, table.c.since), else_=upsert.excluded.since
                        ),
                    },
                )
            )
            failures, since = connection.execute(
                select(table.c.failures, table.c.since).where(table.c.key == key)
            ).one()
            if failures > MAX_FAILURES:
                left = datetime.fromisoformat(since) + WINDOW - moment
                blocked = max(blocked or 0, max(1, int(left.total_seconds() // 60) + 1))
                if failures == MAX_FAILURES + 1:
                    reached.append(key.split(":", 1)[0])
        if reached:
            audit.record(
                connection,
                "server",
                "user.sign-in-limited",
                name[:64],
                {"address": address, "limited": reached},
            )
    return blocked


def _insert_for(connection: Connection) -> Any:
    """INSERT with ON CONFLICT for the store's database (SQLite or PostgreSQL)."""
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
