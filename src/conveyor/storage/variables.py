"""Variables per (app, environment): what a release of the app gets in its process environment.
Secret values are stored encrypted (storage/keyring.py), bound to their app, environment and
name; they are decrypted only for the runtime (``reveal=True``). Readers outside it get names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.errors import StorageError
from conveyor.storage import schema
from conveyor.storage.keyring import SEALED_PREFIX
from conveyor.storage.store import keys_of, now

_T = schema.variables


@dataclass(frozen=True)
class Variable:
    name: str
    #: The value; for a secret, None unless it was read with ``reveal=True``.
    value: str | None
    secret: bool
    updated_by: str
    updated_at: str


def sealing_context(app: str, environment: str, name: str) -> str:
    """What a secret's ciphertext is bound to: moved to another row, it does not decrypt."""
    return f"variable {app}/{environment}/{name}"


def set_variable(
    connection: Connection,
    app: str,
    environment: str,
    name: str,
    value: str,
    *,
    secret: bool,
    by: str,
) -> bool:
    """Set one variable; True when it was new."""
    key = and_(_T.c.app == app, _T.c.environment == environment, _T.c.name == name)
    stored = (
        keys_of(connection).seal(value, sealing_context(app, environment, name))
        if secret
        else value
    )
    values = {"value": stored, "secret": secret, "updated_by": by, "updated_at": now()}
    if connection.execute(select(_T.c.name).where(key)).first() is None:
        connection.execute(insert(_T).values(app=app, environment=environment, name=name, **values))
        return True
    connection.execute(update(_T).where(key).values(**values))
    return False


def unset_variable(connection: Connection, app: str, environment: str, name: str) -> bool:
    """Remove one variable; True when it existed."""
    result = connection.execute(
        delete(_T).where(and_(_T.c.app == app, _T.c.environment == environment, _T.c.name == name))
    )
    return bool(result.rowcount)


def variables_of(
    connection: Connection, app: str, environment: str, *, reveal: bool = False
) -> list[Variable]:
    """The app's variables in the environment; secret values only with ``reveal``."""
    rows = connection.execute(
        select(_T).where(and_(_T.c.app == app, _T.c.environment == environment)).order_by(_T.c.name)
    ).mappings()
    keys = keys_of(connection)
    found = []
    for r in rows:
        value: str | None = r["value"]
        if r["secret"]:
            value = (
                keys.unseal(r["value"], sealing_context(app, environment, r["name"]))
                if reveal
                else None
            )
        found.append(
            Variable(r["name"], value, bool(r["secret"]), r["updated_by"], r["updated_at"])
        )
    return found


def reseal_all(connection: Connection) -> int:
    """Encrypt every secret again with the newest key (key rotation); the number resealed."""
    keys = keys_of(connection)
    return _rewrite_secrets(
        connection, lambda sealed, context: keys.seal(keys.unseal(sealed, context), context)
    )


def reseal_older(connection: Connection, newest: str) -> int:
    """Encrypt again with the newest key the secrets sealed with another one."""
    keys = keys_of(connection)
    prefix = f"{SEALED_PREFIX}{newest}:"
    return _rewrite_secrets(
        connection,
        lambda sealed, context: (
            sealed
            if sealed.startswith(prefix)
            else keys.seal(keys.unseal(sealed, context), context)
        ),
    )


def seal_plain_secrets(connection: Connection) -> int:
    """Encrypt secrets stored in plain text by a version before encryption at rest. A value
    that is encrypted already means the database was secured before and its record of its
    keys removed: StorageError, nothing is changed."""
    keys = keys_of(connection)

    def seal(value: str, context: str) -> str:
        if value.startswith(SEALED_PREFIX):
            raise StorageError(
                f"the secret {context} is encrypted already, but the database has no record "
                "of its keys: that record was removed. Restore the database from a backup"
            )
        return keys.seal(value, context)

    return _rewrite_secrets(connection, seal)


def _rewrite_secrets(connection: Connection, change: Callable[[str, str], str]) -> int:
    rows = connection.execute(
        select(_T.c.app, _T.c.environment, _T.c.name, _T.c.value).where(_T.c.secret)
    ).all()
    for app, environment, name, value in rows:
        connection.execute(
            update(_T)
            .where(and_(_T.c.app == app, _T.c.environment == environment, _T.c.name == name))
            .values(value=change(value, sealing_context(app, environment, name)))
        )
    return len(rows)
