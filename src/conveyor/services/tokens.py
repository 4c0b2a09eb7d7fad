"""API tokens: who a request comes from. A token acts as one user; it may expire and can be
revoked, and a disabled user's tokens stop working. Anyone may create and revoke their own
tokens; tokens of others are an admin's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.domain.access import User
from conveyor.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from conveyor.services.context import Services
from conveyor.storage import audit, tokens
from conveyor.storage import users as stored_users
from conveyor.storage.tokens import Token

#: How often a token's "last used" is written, at most: not on every request.
_TOUCH_EVERY = timedelta(seconds=60)
#: Tokens expire after this many days unless asked otherwise (0: never).
DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 3650


def authenticate(services: Services, token: str) -> tuple[User, Token]:
    """The user ``token`` acts as, and its record; Unauthorized saying why when it acts as
    nobody."""
    with services.store.transaction() as connection:
        found = tokens.find(connection, token)
        if found is None:
            raise Unauthorized(
                "the token is not valid for this server; run `conveyor login` with one that is"
            )
        if not found.intact:
            raise Unauthorized(
                f"the record of this token (id {found.id}) was changed in the database outside "
                "Conveyor, so it no longer works; ask an admin for a new one"
            )
        if found.revoked_at is not None:
            raise Unauthorized(
                f"this token (id {found.id}) was revoked on {found.revoked_at[:10]}; ask for a "
                "new one (`conveyor token create`)"
            )
        moment = datetime.now(UTC)
        if found.expires_at is not None and found.expires_at <= _stamp(moment):
            raise Unauthorized(
                f"this token (id {found.id}) expired on {found.expires_at[:10]}; create a new "
                "one with `conveyor token create` and `conveyor login` with it"
            )
        user = stored_users.get_user(connection, found.user)
        if user is None:
            raise Unauthorized(
                f"this token belongs to {found.user!r}, who is not a user of this server; ask "
                "an admin for a token of your own"
            )
        if user.disabled:
            raise Unauthorized(f"user {found.user} is disabled; their tokens no longer work")
        if found.last_used_at is None or found.last_used_at <= _stamp(moment - _TOUCH_EVERY):
            tokens.touch(connection, found.id, _stamp(moment))
    return user, found


def create_token(
    services: Services,
    actor: User,
    for_user: str | None,
    expires_days: int | None,
    presented: Token | None = None,
) -> tuple[Token, str]:
    """A token for ``for_user`` (default: the actor); only admins make tokens for others.
    A token made with a token (``presented``) for oneself never outlives it, so revoking a
    leaked token cuts off the tokens it made. Returns its record and the token, which is
    shown this once."""
    owner = for_user or actor.name
    if owner != actor.name and not actor.admin:
        raise Forbidden(
            f"{actor.name} may not create tokens for {owner}: that needs an admin (anyone may "
            "create tokens for themselves: leave out --user)"
        )
    days = DEFAULT_EXPIRY_DAYS if expires_days is None else expires_days
    if not 0 <= days <= MAX_EXPIRY_DAYS:
        raise InvalidInput(
            f"--expires is a number of days from 1 to {MAX_EXPIRY_DAYS}, or 0 for a token "
            "that does not expire"
        )
    if days == 0 and not actor.admin:
        raise Forbidden(
            f"{actor.name} may not create a token that never expires: that needs an admin; "
            f"give --expires DAYS (up to {MAX_EXPIRY_DAYS})"
        )
    expires_at = _stamp(datetime.now(UTC) + timedelta(days=days)) if days else None
    if presented is not None and presented.expires_at is not None and owner == actor.name:
        expires_at = min(expires_at or presented.expires_at, presented.expires_at)
    with services.store.transaction() as connection:
        user = stored_users.get_user(connection, owner)
        if user is None:
            raise NotFound(f"there is no user {owner!r}; add them with `conveyor users add`")
        if user.disabled:
            raise InvalidInput(f"{owner} is disabled; a token for them would not work")
        token_id, token = tokens.create_token(
            connection, owner, by=actor.name, expires_at=expires_at
        )
        audit.record(
            connection,
            actor.name,
            "token.create",
            owner,
            {"token": token_id, "expires_at": expires_at},
        )
        record = tokens.get_token(connection, token_id)
    assert record is not None
    return record, token


def list_tokens(services: Services, actor: User) -> list[Token]:
    """Every token for an admin; one's own otherwise. Never the tokens themselves."""
    with services.store.transaction() as connection:
        return tokens.list_tokens(connection, None if actor.admin else actor.name)


def revoke_token(services: Services, actor: User, token_id: int) -> Token:
    with services.store.transaction() as connection:
        found = tokens.get_token(connection, token_id)
        if found is None or (found.user != actor.name and not actor.admin):
            # Someone else's token is "not found" for a non-admin: ids reveal nothing.
            raise NotFound(f"you have no token {token_id}; `conveyor token list` shows yours")
        if not tokens.revoke(connection, token_id):
            raise InvalidInput(f"token {token_id} was revoked already")
        audit.record(connection, actor.name, "token.revoke", found.user, {"token": token_id})
        revoked = tokens.get_token(connection, token_id)
    assert revoked is not None
    return revoked


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")
