"""Variables per (app, environment): what a release of the app gets in its process environment.
Secret values are stored for the runtime only; readers outside it get the names."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.storage import schema
from conveyor.storage.store import now

_T = schema.variables


@dataclass(frozen=True)
class Variable:
    name: str
    value: str
    secret: bool
    updated_by: str
    updated_at: str


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
    values = {"value": value, "secret": secret, "updated_by": by, "updated_at": now()}
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


def variables_of(connection: Connection, app: str, environment: str) -> list[Variable]:
    rows = connection.execute(
        select(_T).where(and_(_T.c.app == app, _T.c.environment == environment)).order_by(_T.c.name)
    ).mappings()
    return [
        Variable(r["name"], r["value"], bool(r["secret"]), r["updated_by"], r["updated_at"])
        for r in rows
    ]
