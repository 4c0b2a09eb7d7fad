"""Apps and their manifest (`conveyor.yml`): what an app is and how it asks to be run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.domain.run_email import EmailRule
from conveyor.domain.schedules import DEFAULT_TIMEOUT, Schedule
from conveyor.errors import InvalidInput


class AppType(StrEnum):
    FASTAPI = "fastapi"
    FLASK = "flask"
    DASH = "dash"
    SHINY = "shiny"
    STREAMLIT = "streamlit"
    NOTEBOOK = "notebook"
    QUARTO = "quarto"
    STATIC = "static"
    COMMAND = "command"
    #: A batch command with no HTTP port: it runs on a schedule or on demand, writing files
    #: into $CONVEYOR_RUN_OUTPUT (served at /<app>/) and its environment's output location.
    JOB = "job"


#: Types whose releases can be run again (`conveyor run`, schedules): reports re-render, a job
#: runs its command.
RUNNABLE_TYPES = frozenset({AppType.NOTEBOOK, AppType.QUARTO, AppType.JOB})


#: The entrypoint a type uses when `conveyor.yml` names none.
DEFAULT_ENTRYPOINTS: dict[AppType, str] = {
    AppType.FASTAPI: "app:app",
    AppType.FLASK: "app:app",
    AppType.DASH: "app:server",
    AppType.SHINY: "app.py",
    AppType.STREAMLIT: "app.py",
    AppType.NOTEBOOK: "report.ipynb",
    AppType.QUARTO: "report.qmd",
    AppType.STATIC: ".",
    AppType.COMMAND: "",
    AppType.JOB: "",
}

#: Packages an app of each type needs to be served, added to its requirements before locking
#: when missing. PyYAML is for conveyor.config, which every runtime can import.
SERVER_PACKAGES: dict[AppType, tuple[str, ...]] = {
    AppType.FASTAPI: ("uvicorn",),
    AppType.FLASK: ("gunicorn",),
    AppType.DASH: ("gunicorn",),
    AppType.SHINY: ("shiny",),
    AppType.STREAMLIT: ("streamlit",),
    AppType.NOTEBOOK: ("nbconvert", "nbclient", "ipykernel"),
    AppType.QUARTO: ("nbclient", "ipykernel"),
    AppType.STATIC: (),
    AppType.COMMAND: (),
    AppType.JOB: (),
}
BASE_PACKAGES: tuple[str, ...] = ("pyyaml",)

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

#: The first user id an app is given to run as (one per app and environment, by a root
#: server): above the ids of people, system accounts and systemd's dynamic users, above the
#: ranges handed to containers (systemd's container range ends at 1879048191; subordinate ids
#: in /etc/subuid start at 100000, 65536 per user), and below 2^31 (for programs that keep ids
#: signed).
FIRST_APP_UID = 1_900_000_000
#: The user a runtime's own Python runs as while the runtime is checked (its packages are the
#: lock's code, not the server's).
BUILDER_UID = FIRST_APP_UID - 1


@dataclass(frozen=True)
class SmokeCheck:
    """An HTTP expectation checked against a new release before it takes traffic."""

    path: str
    status: int = 200
    contains: str | None = None


@dataclass(frozen=True)
class Checks:
    tests: str | None = None  # a command run in the release's runtime
    smoke: tuple[SmokeCheck, ...] = ()


#: `ci.branches` when conveyor.yml does not say: test deploys to test, main promotes to prod.
DEFAULT_BRANCHES: tuple[tuple[str, str], ...] = (("main", "prod"), ("test", "test"))
#: `ci.config`: how `conveyor check` treats an environment with no section in config.yml
#: (the app reads `default` there): a warning (the default), or a failure.
CI_CONFIG_MODES = ("warn", "strict")


@dataclass(frozen=True)
class Resources:
    """What one worker of the app may use (`resources:` in conveyor.yml); None: no limit."""

    memory: int | None = None  # bytes
    cpus: float | None = None
    processes: int | None = None

    def describe(self) -> str:
        parts = []
        if self.memory is not None:
            parts.append(f"memory {show_size(self.memory)}")
        if self.cpus is not None:
            parts.append(f"cpus {self.cpus:g}")
        if self.processes is not None:
            parts.append(f"processes {self.processes}")
        return ", ".join(parts) or "no limits"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: object, what: str) -> int:
    """``512MiB``, ``2G``, ``64KiB`` as bytes (units are powers of 1024); InvalidInput naming
    ``what`` otherwise."""
    match = _SIZE.match(str(text)) if not isinstance(text, bool) else None
    if not match:
        raise InvalidInput(f"{what}: {text!r} is not a size: write e.g. 512MiB or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def show_size(size: int) -> str:
    """Bytes as people write them: 512 MiB, 2 GiB."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class AppSpec:
    """An app as declared in its `conveyor.yml`."""

    name: str
    type: AppType
    entrypoint: str
    python: str = ">=3.11"
    requirements: str | None = None  # requirements.txt, pyproject.toml, uv.lock or pylock.toml
    health: str = "/"
    checks: Checks = field(default_factory=Checks)
    exclude: tuple[str, ...] = ()
    workers: int = 1
    branches: tuple[tuple[str, str], ...] = DEFAULT_BRANCHES
    ci_config: str = CI_CONFIG_MODES[0]  # "warn" or "strict"
    build: str | None = None  # static sites: a command that produces the directory
    max_file_mb: int = 100
    max_total_mb: int = 500
    max_files: int = 20_000
    resources: Resources = field(default_factory=Resources)
    #: Runnable types: when to run again (`schedule:`), and how long a run may take.
    schedule: Schedule | None = None
    timeout: int = DEFAULT_TIMEOUT
    #: How long the app may sit idle before it sleeps ("15m", "off"); None: the
    #: environment's default (see domain/sleep.py).
    sleep_after: str | None = None
    #: Runnable types: who is emailed how runs end where schedules are active (`email:`).
    email: tuple[EmailRule, ...] = ()

    def required_checks(self) -> tuple[str, ...]:
        """The checks a release must pass to be verified: health always, smoke and tests when
        declared."""
        kinds = ["health"]
        if self.checks.smoke:
            kinds.append("smoke")
        if self.checks.tests:
            kinds.append("tests")
        return tuple(kinds)
