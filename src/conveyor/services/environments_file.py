"""The environments a server runs, read from a YAML file (`conveyor serve --environments`):

    environments:
      dev:  {port: 8701}
      test: {port: 8702, promotes_from: dev}
      prod: {port: 8703, promotes_from: test, direct_deploys: false, approvals: 1}

Each environment may also declare data connections and its output location (conveyor.data):

      test:
        port: 8702
        outputs: /srv/conveyor/outputs/test
        data:
          warehouse:
            url: postgresql://app_login:${WAREHOUSE_PASSWORD}@db/warehouse
            mode: read-only
            role: reporting_ro

Order is the order in the file. Fields left out take the defaults of the built-in dev, test and
prod environments for those names, else: direct deploys, no upstream, no approvals.

An optional `git:` list turns on git-driven mode (services/git_driven.py):

    git:
      - repository: /srv/git/forecaster.git   # a path or URL the server can reach
        path: .                              # the app's directory in it (default .)
        branches: {test: test, main: prod}   # default: the app's ci.branches
        poll: 60                             # seconds between fetches (default 60)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conveyor.domain.access import Role
from conveyor.domain.environments import (
    DEFAULT_ENVIRONMENTS,
    DataConnection,
    Environment,
    Policy,
    definition_problem,
    order_problem,
)
from conveyor.domain.sleep import parse_sleep_after
from conveyor.domain.viewers import ViewerAccess, parse_access
from conveyor.errors import InvalidInput
from conveyor.services.git_driven import GitSource

_FIELDS = {
    "port",
    "config_name",
    "direct_deploys",
    "promotes_from",
    "approvals",
    "approver_not_deployer",
    "data",
    "outputs",
    "variables",
    "secrets",
    "default_roles",
    "isolation",
    "domain",
    "access",
    "schedules",
    "sleep_after",
}
_CONNECTION_FIELDS = {"url", "mode", "role", "verified"}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def read_environments(path: Path) -> list[Environment]:
    data = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get("environments"), dict):
        raise InvalidInput(
            f"{path}: expected a mapping `environments:` of name -> settings (see docs/server.md)"
        )
    defaults = {e.name: e for e in DEFAULT_ENVIRONMENTS}
    found: list[Environment] = []
    for position, (name, settings) in enumerate(data["environments"].items()):
        where = f"{path}: environment {name!r}"
        if not isinstance(name, str) or not name or set(name) - _NAME_CHARS:
            raise InvalidInput(f"{where}: names use lower-case letters, digits and '-'")
        settings = settings or {}
        if not isinstance(settings, dict):
            raise InvalidInput(f"{where}: settings must be a mapping")
        unknown = set(settings) - _FIELDS
        if unknown:
            raise InvalidInput(
                f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; known: "
                f"{', '.join(sorted(_FIELDS))}"
            )
        base = defaults.get(name)
        policy = base.policy if base else Policy()
        port = settings.get("port", base.port if base else None)
        if port is None:
            raise InvalidInput(f"{where}: give it a `port:` for its listener (0: any free port)")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInput(f"{where}: `port` must be a number from 0 to 65535 (0: any free)")
        found.append(
            Environment(
                name=name,
                position=position,
                port=port,
                config_name=str(settings.get("config_name", name)),
                policy=Policy(
                    direct_deploys=_flag(settings, "direct_deploys", policy.direct_deploys, where),
                    promotes_from=settings.get("promotes_from", policy.promotes_from),
                    approvals=_count(settings, policy.approvals, where),
                    approver_not_deployer=_flag(
                        settings, "approver_not_deployer", policy.approver_not_deployer, where
                    ),
                ),
                data=_connections(settings.get("data"), where),
                outputs=_outputs(settings.get("outputs"), where),
                variables=_variables(settings.get("variables"), where),
                secrets=_secrets(settings.get("secrets"), where),
                default_roles=_roles(settings.get("default_roles"), where),
                isolation=_isolation(settings.get("isolation"), where),
                domain=_domain(settings.get("domain"), where),
                access=_access(settings.get("access"), where),
                schedules=str(settings.get("schedules") or ""),
                sleep_after=_sleep_after(settings, where),
            )
        )
    for environment in found:
        problem = definition_problem(environment)
        if problem is not None:
            raise InvalidInput(f"{path}: environment {environment.name!r}: {problem}")
    problem = order_problem(found)
    if problem is not None:
        raise InvalidInput(f"{path}: {problem}")
    return found


def _connections(declared: Any, where: str) -> tuple[DataConnection, ...]:
    if declared is None:
        return ()
    if not isinstance(declared, dict):
        raise InvalidInput(f"{where}: `data` maps connection names to {{url, mode, role}}")
    found = []
    for name, spec in declared.items():
        at = f"{where}, data connection {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise InvalidInput(f"{at}: give its `url` (secrets as ${{NAME}} references)")
        unknown = set(spec) - _CONNECTION_FIELDS
        if unknown:
            raise InvalidInput(f"{at}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        mode = str(spec.get("mode", "read-only"))
        role = spec.get("role")
        if role is not None and not isinstance(role, str):
            raise InvalidInput(f"{at}: `role` is the name of a database role")
        verified = spec.get("verified", True)
        if not isinstance(verified, bool):
            raise InvalidInput(f"{at}: `verified` is true or false")
        found.append(DataConnection(str(name), spec["url"], mode, role, verified))
    return tuple(found)


def _variables(declared: Any, where: str) -> tuple[tuple[str, str], ...]:
    if declared is None:
        return ()
    if not isinstance(declared, dict):
        raise InvalidInput(f"{where}: `variables` maps names to values")
    found = []
    for name, value in declared.items():
        if isinstance(value, dict | list) or value is None:
            raise InvalidInput(f"{where}: variable {name} needs a plain value")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        found.append((str(name), text))
    return tuple(sorted(found))


def _secrets(declared: Any, where: str) -> tuple[tuple[str, str], ...]:
    if declared is None:
        return ()
    if not isinstance(declared, dict):
        raise InvalidInput(f"{where}: `secrets` maps names to ${{REFERENCE}}s")
    found = []
    for name, reference in declared.items():
        if not isinstance(reference, str):
            raise InvalidInput(
                f"{where}: secret {name} must be a reference like ${{{name}}} to a variable "
                "of the server's environment, never the value itself"
            )
        found.append((str(name), reference))
    return tuple(sorted(found))


def _isolation(declared: Any, where: str) -> str:
    if declared is None:
        return "preferred"
    if not isinstance(declared, str):
        raise InvalidInput(f"{where}: `isolation` is required or preferred")
    return declared


def _sleep_after(settings: dict[str, Any], where: str) -> str:
    """`sleep_after: 15m` or `off` ("" when not given: apps and the defaults decide)."""
    if "sleep_after" not in settings:
        return ""
    return parse_sleep_after(settings["sleep_after"], f"{where}: sleep_after")


def _access(declared: Any, where: str) -> ViewerAccess:
    """`access: public`, `signed-in`, or a list of users and groups."""
    if declared is None:
        return ViewerAccess()
    text = ",".join(map(str, declared)) if isinstance(declared, list) else str(declared)
    try:
        return parse_access(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: `access`: {exc}") from None


def _domain(declared: Any, where: str) -> str | None:
    if declared is None:
        return None
    if not isinstance(declared, str):
        raise InvalidInput(f"{where}: `domain` is a DNS name such as test.example.com")
    return declared.lower()


def _roles(declared: Any, where: str) -> tuple[Role, ...] | None:
    if declared is None:
        return None
    known = {r.value for r in Role}
    if not isinstance(declared, list) or not all(r in known for r in declared):
        raise InvalidInput(
            f"{where}: `default_roles` lists roles a new user gets there, from: "
            f"{', '.join(sorted(known))} (e.g. [viewer]; [] for none)"
        )
    return tuple(Role(r) for r in declared)


def _outputs(declared: Any, where: str) -> str | None:
    if declared is None:
        return None
    if not isinstance(declared, str) or not declared.startswith("/"):
        raise InvalidInput(f"{where}: `outputs` is an absolute directory path")
    return declared


def _flag(settings: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: `{key}` must be true or false")
    return value


def _count(settings: dict[str, Any], default: int, where: str) -> int:
    value = settings.get("approvals", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{where}: `approvals` must be a whole number, 0 or more")
    return value


_GIT_FIELDS = {"repository", "path", "branches", "poll"}


def read_git_sources(path: Path) -> list[GitSource]:
    """The repositories the file asks the server to watch (none without a `git:` list)."""
    data = _read(path)
    listed = data.get("git") if isinstance(data, dict) else None
    if listed is None:
        return []
    if not isinstance(listed, list):
        raise InvalidInput(f"{path}: `git:` must be a list of repositories to watch")
    sources = []
    for number, entry in enumerate(listed, start=1):
        where = f"{path}: git entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("repository"), str):
            raise InvalidInput(f"{where}: give at least `repository: PATH-OR-URL`")
        unknown = set(entry) - _GIT_FIELDS
        if unknown:
            raise InvalidInput(
                f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; known: "
                f"{', '.join(sorted(_GIT_FIELDS))}"
            )
        branches = entry.get("branches")
        if branches is not None and not (
            isinstance(branches, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in branches.items())
        ):
            raise InvalidInput(f"{where}: `branches` maps branch names to environments")
        poll = entry.get("poll", 60)
        if not isinstance(poll, int | float) or isinstance(poll, bool) or poll <= 0:
            raise InvalidInput(f"{where}: `poll` is seconds between fetches, more than 0")
        sources.append(
            GitSource(
                repository=entry["repository"],
                path=str(entry.get("path", ".")),
                branches=tuple(sorted(branches.items())) if branches else None,
                poll=float(poll),
            )
        )
    return sources


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read the environments file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None
