"""Apps and their manifest (`conveyor.yml`): what an app is and how it asks to be run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


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
}
BASE_PACKAGES: tuple[str, ...] = ("pyyaml",)

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


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
    build: str | None = None  # static sites: a command that produces the directory
    max_file_mb: int = 100
    max_total_mb: int = 500
    max_files: int = 20_000

    def required_checks(self) -> tuple[str, ...]:
        """The checks a release must pass to be verified: health always, smoke and tests when
        declared."""
        kinds = ["health"]
        if self.checks.smoke:
            kinds.append("smoke")
        if self.checks.tests:
            kinds.append("tests")
        return tuple(kinds)
