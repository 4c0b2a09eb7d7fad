"""Variables and secrets per app and environment. Secret values go to the app's process and
nowhere else: listings show their names, audit events never hold values."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from conveyor.domain.variables import check_name
from conveyor.errors import NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog
from conveyor.storage import variables as stored

MASK = "••••••"


@dataclass(frozen=True)
class VariableView:
    """A variable as anyone outside the runtime sees it."""

    name: str
    value: str  # MASK for a secret
    secret: bool
    updated_by: str
    updated_at: str


def set_variable(
    services: Services,
    app: str,
    environment: str,
    name: str,
    value: str,
    *,
    secret: bool,
    actor: str,
) -> bool:
    """Set a variable for the app's next releases in the environment; True when it was new."""
    check_name(name)
    with services.store.transaction() as connection:
        _require(connection, app, environment)
        new = stored.set_variable(
            connection, app, environment, name, value, secret=secret, by=actor
        )
        audit.record(
            connection,
            actor,
            "variable.set",
            f"{app}/{environment}",
            {"name": name, "secret": secret},  # never the value
        )
    return new


def unset_variable(services: Services, app: str, environment: str, name: str, actor: str) -> None:
    with services.store.transaction() as connection:
        _require(connection, app, environment)
        if not stored.unset_variable(connection, app, environment, name):
            raise NotFound(f"{app} has no variable {name} in {environment}")
        audit.record(connection, actor, "variable.unset", f"{app}/{environment}", {"name": name})


def list_variables(services: Services, app: str, environment: str) -> list[VariableView]:
    with services.store.transaction() as connection:
        _require(connection, app, environment)
        found = stored.variables_of(connection, app, environment)
    return [
        VariableView(
            v.name, MASK if v.value is None else v.value, v.secret, v.updated_by, v.updated_at
        )
        for v in found
    ]


def _require(connection: Connection, app: str, environment: str) -> None:
    catalog.get_environment(connection, environment)
    if not catalog.app_exists(connection, app):
        raise NotFound(f"there is no app {app!r}; deploy it first, then set its variables")
