"""What an app's processes are given: the variables Conveyor sets for every process, and in
``CONVEYOR_DATA`` (read by conveyor.data in the app): its
environment's data connections, with ``${NAME}`` references filled from the server's own
environment, and its output directory (the environment's output location / the app)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.domain.environments import Environment
from conveyor.domain.variables import name_problem
from conveyor.errors import RuntimeFailure
from conveyor.runtime.interface import ReleasePlan
from conveyor.runtime.sandbox import SANDBOX_HOME, Isolation

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_references(text: str, server_environ: Mapping[str, str], what: str) -> str:
    """``text`` with each ``${NAME}`` replaced by NAME's value in the server's environment."""

    def fill(match: re.Match[str]) -> str:
        variable = match.group(1)
        value = server_environ.get(variable)
        if value is None:
            raise RuntimeFailure(
                f"{what} refers to ${{{variable}}}, which is not set in the environment of "
                "`conveyor serve`; set it where the server runs (it stays out of files and "
                "the metadata)"
            )
        return value

    return _REFERENCE.sub(fill, text)


def environment_variables(
    environment: Environment, server_environ: Mapping[str, str]
) -> dict[str, str]:
    """The variables every app in ``environment`` gets: its plain variables and its secrets,
    filled from the server's environment. A name that would change the app's code (stored by
    an older version) is left out."""
    given = {n: v for n, v in environment.variables if name_problem(n) is None}
    for name, reference in environment.secrets:
        if name_problem(name) is not None:
            continue
        given[name] = fill_references(
            reference, server_environ, f"environment {environment.name}'s secret {name}"
        )
    return given


def output_directory(environment: Environment, app: str, home: Path) -> Path:
    base = Path(environment.outputs) if environment.outputs else home / "outputs" / environment.name
    return base / app


def data_settings(
    environment: Environment, app: str, home: Path, server_environ: Mapping[str, str]
) -> str:
    """The JSON for ``CONVEYOR_DATA``; creates the app's output directory."""
    connections = {}
    for connection in environment.data:
        connections[connection.name] = {
            "url": fill_references(
                connection.url,
                server_environ,
                f"environment {environment.name}'s data connection {connection.name!r}",
            ),
            "mode": connection.mode,
            "role": connection.role,
        }
    output = output_directory(environment, app, home)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot create the output directory {output} of {app} in {environment.name}: "
            f"{exc.strerror}"
        ) from None
    return json.dumps(
        {"environment": environment.config_name, "output": str(output), "connections": connections}
    )


def process_environment(runtime: Path, home: Path, config_name: str, app: str) -> dict[str, str]:
    """What Conveyor sets for every process of an app (its server, its tests) on top of the
    variables it is given: its runtime first on PATH, its own HOME, and the environment's
    config name in CONVEYOR_ENV and R_CONFIG_ACTIVE."""
    return {
        "PATH": f"{runtime / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "VIRTUAL_ENV": str(runtime),
        "CONVEYOR_ENV": config_name,
        "R_CONFIG_ACTIVE": config_name,
        "CONVEYOR_APP": app,
    }


def sqlite_files(environment: Environment) -> list[tuple[Path, bool]]:
    """The SQLite files the environment's data connections name, each with whether the
    connection may write it: the sandbox shows them (read-only ones read-only). For a file
    that may be written, its directory, where SQLite keeps its journal."""
    found: list[tuple[Path, bool]] = []
    for connection in environment.data:
        try:
            url = make_url(connection.url)
        except ArgumentError:
            continue
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            continue
        path = Path(url.database)
        if not path.is_absolute():
            continue
        if connection.read_only:
            found.append((path, False))
        else:
            found.append((path.parent, True))
    return found


def refuse_shared_directory(environment: str, app: str, directory: Path, home: Path) -> None:
    """A writable SQLite file's directory is shown to the app read-write: refuse one that
    holds the server's own files (or is the whole file system)."""
    resolved = directory.resolve()
    if (
        resolved == Path("/")
        or home.resolve() == resolved
        or home.resolve().is_relative_to(resolved)
    ):
        raise RuntimeFailure(
            f"{environment}: a writable SQLite database in {directory} would let {app} write "
            f"that whole directory, which holds Conveyor's home {home}; give the database a "
            "directory of its own (for example /srv/conveyor-data/<app>/app.db)"
        )


def release_environment(
    plan: ReleasePlan, runtime_bin: Path, release_dir: Path, home: Path, isolation: Isolation
) -> dict[str, str]:
    """All a release's processes are given: never the server's own environment. In a sandbox
    its HOME is its private /tmp; without one, a directory of the release."""
    if isolation is Isolation.BUBBLEWRAP:
        app_home = Path(SANDBOX_HOME)
    else:
        app_home = release_dir / "home"
        app_home.mkdir(parents=True, exist_ok=True)
    config_name = plan.environment.config_name
    return {
        "LANG": "C.UTF-8",  # the app's own LANG, when it sets one, wins
        **environment_variables(plan.environment, os.environ),
        **plan.variables,  # the app's own variables win over its environment's
        **process_environment(runtime_bin.parent, app_home, config_name, plan.app),
        "USER": f"conveyor-{plan.app}",
        "LOGNAME": f"conveyor-{plan.app}",
        "CONVEYOR_RELEASE": str(plan.release_id),
        "CONVEYOR_DATA": data_settings(plan.environment, plan.app, home, os.environ),
    }
