"""Environments: ordered stages (dev, test, prod by default), each with its own policy."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.domain.access import Role
from conveyor.domain.schedules import SCHEDULE_STATES, default_schedules_for
from conveyor.domain.variables import name_problem
from conveyor.domain.viewers import ViewerAccess, access_from_json


@dataclass(frozen=True)
class Policy:
    """What an environment accepts.

    ``direct_deploys``: a freshly built bundle may be deployed straight into it.
    ``promotes_from``: the upstream environment whose verified bundles it takes (None: none).
    ``approvals``: sign-offs a bundle needs here before it may be released.
    ``approver_not_deployer``: approvals by the person who deployed the bundle do not count.
    """

    direct_deploys: bool = True
    promotes_from: str | None = None
    approvals: int = 0
    approver_not_deployer: bool = False


@dataclass(frozen=True)
class DataConnection:
    """A named data connection apps reach with `conveyor.data.connect(name)`.

    ``url`` may hold ``${NAME}`` references, filled from the server's own environment when a
    release starts, so passwords never sit in the environments file or the metadata store.
    ``mode`` is read-only or read-write; ``role`` is a PostgreSQL role every connection
    switches to (one with SELECT rights only, for read-only access to production data)."""

    name: str
    url: str
    mode: str = "read-only"
    role: str | None = None
    #: A read-only connection's login is proven unable to write before a release uses it
    #: (`conveyor data check`); False: used without that proof, knowingly (status shows it).
    verified: bool = True

    @property
    def read_only(self) -> bool:
        return self.mode == "read-only"


@dataclass(frozen=True)
class Environment:
    name: str
    position: int
    port: int
    #: The value apps get in CONVEYOR_ENV and R_CONFIG_ACTIVE (their config.yml section).
    config_name: str = ""
    policy: Policy = field(default_factory=Policy)
    data: tuple[DataConnection, ...] = ()
    #: Where this environment's apps write outputs (each app in its own subdirectory);
    #: None: HOME/outputs/<environment>.
    outputs: str | None = None
    #: Variables every app in the environment gets (an app's own variables win).
    variables: tuple[tuple[str, str], ...] = ()
    #: Secrets every app gets, as references to the server's environment: (name, "${REF}").
    secrets: tuple[tuple[str, str], ...] = ()
    #: The roles a user added without `--role` gets here; by default those of
    #: ``default_roles_for(name)``.
    default_roles: tuple[Role, ...] | None = None
    #: "required": a release never starts outside a sandbox; "preferred": sandboxed where
    #: the server can, with a warning where it cannot.
    isolation: str = "preferred"
    #: Host-based routing: every app also answers at ``<app>.<domain>``, its own origin.
    domain: str | None = None
    #: Who may view the environment's apps unless an app says otherwise.
    access: ViewerAccess = field(default_factory=ViewerAccess)
    #: "active": reports and jobs run on their schedules; "paused": only when run by hand.
    #: By default paused in dev, active elsewhere.
    schedules: str = ""
    #: How long an idle app sleeps after here ("15m", "off"); "" when the environments file
    #: does not say (the app's conveyor.yml decides, else 15 min in dev and test, never
    #: elsewhere: see domain/sleep.py).
    sleep_after: str = ""

    def __post_init__(self) -> None:
        if not self.config_name:
            object.__setattr__(self, "config_name", self.name)
        if not self.schedules:
            object.__setattr__(self, "schedules", default_schedules_for(self.name))
        if self.default_roles is None:
            object.__setattr__(self, "default_roles", default_roles_for(self.name))

    @property
    def roles_for_new_users(self) -> tuple[Role, ...]:
        return self.default_roles or ()


def default_roles_for(name: str) -> tuple[Role, ...]:
    """A new user's roles in an environment unless the environments say otherwise: a
    developer in dev (the sandbox), a viewer everywhere else. Deploying to test, promoting
    and approving are given to people one by one."""
    return (Role.DEVELOPER,) if name == "dev" else (Role.VIEWER,)


DEFAULT_ENVIRONMENTS: tuple[Environment, ...] = (
    Environment("dev", 0, 8701, policy=Policy(direct_deploys=True)),
    Environment("test", 1, 8702, policy=Policy(direct_deploys=True, promotes_from="dev")),
    Environment("prod", 2, 8703, policy=Policy(direct_deploys=False, promotes_from="test")),
)


def next_environment(
    environments: tuple[Environment, ...] | list[Environment], name: str
) -> Environment | None:
    """The environment that promotes from ``name`` (the default target of `promote`)."""
    for environment in sorted(environments, key=lambda e: e.position):
        if environment.policy.promotes_from == name:
            return environment
    return None


def order_problem(environments: Sequence[Environment]) -> str | None:
    """What is wrong with a pipeline's environments as a whole, or None: none declared, one
    declared twice, or one promoting from an environment that does not come before it."""
    names = [e.name for e in environments]
    if not names:
        return "declare at least one environment"
    if len(set(names)) != len(names):
        return "an environment is declared twice"
    for environment in environments:
        upstream = environment.policy.promotes_from
        if upstream is not None and upstream not in names[: names.index(environment.name)]:
            return (
                f"{environment.name} promotes from {upstream!r}, which is not an environment "
                "declared before it"
            )
    return None


#: user:password@ in a URL whose password is not a ${NAME} reference.
_CREDENTIALS = re.compile(r"://[^/@:]+:(?!\$\{)[^@/]+@")
_REFERENCE_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
MODES = ("read-only", "read-write")
ISOLATION = ("required", "preferred")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,200}}$){_LABEL}(\.{_LABEL})+$")


def definition_problem(environment: Environment) -> str | None:
    """What is wrong with one environment's definition, wherever it comes from (a file the
    server reads, or one `conveyor apply` sends): variable names that change the app's code,
    secrets given as values instead of references, passwords written into data URLs."""
    for name, _ in environment.variables:
        problem = name_problem(name)
        if problem is not None:
            return f"variable {problem}"
    for name, reference in environment.secrets:
        problem = name_problem(name)
        if problem is not None:
            return f"secret {problem}"
        if not _REFERENCE_ONLY.fullmatch(reference):
            return (
                f"secret {name} must be a reference like ${{{name}}} to a variable of the "
                "server's environment, never the value itself"
            )
    for connection in environment.data:
        where = f"data connection {connection.name!r}"
        if connection.mode not in MODES:
            return f"{where}: `mode` is read-only or read-write, not {connection.mode!r}"
        if _CREDENTIALS.search(connection.url):
            return (
                f"{where}: the url holds a password; write it as a reference, e.g. "
                "postgresql://reader:${WAREHOUSE_PASSWORD}@db/warehouse, and set that "
                "variable where `conveyor serve` runs"
            )
    if environment.outputs is not None and not environment.outputs.startswith("/"):
        return "`outputs` is an absolute directory path"
    if environment.isolation not in ISOLATION:
        return (
            "`isolation` is required (releases never start unsandboxed) or preferred "
            f"(sandboxed where the server can), not {environment.isolation!r}"
        )
    if environment.schedules not in SCHEDULE_STATES:
        return (
            "`schedules` is active (reports and jobs run on their schedules) or paused (they "
            f"run only by hand), not {environment.schedules!r}"
        )
    if environment.domain is not None and not _DOMAIN.match(environment.domain):
        return (
            "`domain` is a DNS name such as test.example.com: each app then also answers at "
            "<app>.test.example.com"
        )
    return None


def environment_to_dict(environment: Environment) -> dict[str, Any]:
    """The JSON form of an environment (the API's, and what plans compare)."""
    return {
        "name": environment.name,
        "position": environment.position,
        "port": environment.port,
        "config_name": environment.config_name,
        "policy": asdict(environment.policy),
        "data": [asdict(c) for c in environment.data],
        "outputs": environment.outputs,
        "variables": dict(environment.variables),
        "secrets": dict(environment.secrets),
        "default_roles": [str(r) for r in environment.roles_for_new_users],
        "isolation": environment.isolation,
        "domain": environment.domain,
        "access": json.loads(environment.access.to_json()),
        "schedules": environment.schedules,
        "sleep_after": environment.sleep_after,
    }


def environment_from_dict(data: Mapping[str, Any]) -> Environment:
    return Environment(
        name=str(data["name"]),
        position=int(data["position"]),
        port=int(data["port"]),
        config_name=str(data.get("config_name") or data["name"]),
        policy=Policy(**data.get("policy", {})),
        data=tuple(DataConnection(**c) for c in data.get("data", [])),
        outputs=data.get("outputs"),
        variables=tuple(sorted((str(k), str(v)) for k, v in data.get("variables", {}).items())),
        secrets=tuple(sorted((str(k), str(v)) for k, v in data.get("secrets", {}).items())),
        default_roles=(
            tuple(Role(r) for r in data["default_roles"]) if "default_roles" in data else None
        ),
        isolation=str(data.get("isolation") or "preferred"),
        domain=data.get("domain"),
        access=access_from_json(json.dumps(data["access"])) if "access" in data else ViewerAccess(),
        schedules=str(data.get("schedules") or ""),
        sleep_after=str(data.get("sleep_after") or ""),
    )


def fingerprint(environments: Iterable[Environment]) -> str:
    """sha256 of the environments' definitions: what `conveyor apply` checks has not changed
    since the plan was shown."""
    canonical = json.dumps(
        [environment_to_dict(e) for e in sorted(environments, key=lambda e: e.position)],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    """One difference between the environments a server runs and those a file declares."""

    environment: str
    kind: str  # "add", "remove" or "change"
    setting: str = ""  # for a change: e.g. "port", "policy.approvals", "variables.REGION"
    before: Any = None
    after: Any = None

    def describe(self) -> str:
        if self.kind == "add":
            return f"+ {self.environment}: new environment"
        if self.kind == "remove":
            return f"- {self.environment}: removed"
        return f"~ {self.environment}.{self.setting}: {_shown(self.before)} -> {_shown(self.after)}"


def plan_changes(current: Iterable[Environment], desired: Iterable[Environment]) -> list[Change]:
    """What applying ``desired`` over ``current`` changes, setting by setting."""
    now = {e.name: environment_to_dict(e) for e in current}
    wanted = {e.name: environment_to_dict(e) for e in desired}
    changes: list[Change] = []
    for name in wanted:
        if name not in now:
            changes.append(Change(name, "add"))
            continue
        for setting, before, after in _differences(now[name], wanted[name]):
            changes.append(Change(name, "change", setting, before, after))
    changes += [Change(name, "remove") for name in now if name not in wanted]
    return changes


def _differences(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and key != "data":
            yield from _differences(old, new, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", old, new


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
