"""Variables and secrets per app and environment. Secret values go to the app's process and
nowhere else: listings show their names, audit events never hold values."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from conveyor.errors import InvalidInput, NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog
from conveyor.storage import variables as stored

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Set by Conveyor for every release; an app cannot override them.
RESERVED = frozenset(
    {"PORT", "PATH", "HOME", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "R_CONFIG_ACTIVE", "R_CONFIG_FILE"}
)
#: Names that change which code runs (the loader, an interpreter, a shell's start-up file), so
#: setting one would change Prod's code without a promotion.
_CODE_PREFIXES = ("LD_", "DYLD_", "PYTHON", "CONVEYOR_")
_CODE_NAMES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "GCONV_PATH",
        "NODE_OPTIONS",
        "PERL5LIB",
        "PERL5OPT",
        "RUBYOPT",
        "JAVA_TOOL_OPTIONS",
        "R_PROFILE",
        "R_PROFILE_USER",
        "R_ENVIRON",
        "R_ENVIRON_USER",
        "R_LIBS",
        "R_LIBS_USER",
        "R_LIBS_SITE",
    }
)
#: PYTHON* variables an app may set: they change how Python behaves, not which code it runs.
PYTHON_ALLOWED = frozenset(
    {
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONFAULTHANDLER",
        "PYTHONTRACEMALLOC",
    }
)
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


def check_name(name: str) -> None:
    """Refuse a name that is malformed, set by Conveyor, or changes which code runs."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not a valid variable name: use letters, digits and _ (not first "
            "a digit), up to 128 characters"
        )
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)


def name_problem(name: str) -> str | None:
    """Why a variable may not be called ``name``, or None."""
    if name in RESERVED or name.startswith("CONVEYOR_"):
        return (
            f"{name} is set by Conveyor for every release and cannot be changed; choose "
            "another name"
        )
    if name in PYTHON_ALLOWED:
        return None
    if name.startswith(_CODE_PREFIXES) or name in _CODE_NAMES:
        allowed = ", ".join(sorted(PYTHON_ALLOWED))
        return (
            f"{name} changes which code the app's interpreter or loader runs, so it would "
            "change the app without a promotion; Conveyor does not set it (PYTHON* variables "
            f"allowed: {allowed})"
        )
    return None


def _require(connection: Connection, app: str, environment: str) -> None:
    catalog.get_environment(connection, environment)
    if not catalog.app_exists(connection, app):
        raise NotFound(f"there is no app {app!r}; deploy it first, then set its variables")
