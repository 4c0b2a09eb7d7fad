"""The text of the files `conveyor init` writes into an app's directory: conveyor.yml,
config.yml, the smoke test, and the requirements the tests need."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from conveyor.bundles.lock import is_fully_pinned, normalise_name, requirement_names
from conveyor.domain.apps import DEFAULT_ENTRYPOINTS, AppType
from conveyor.errors import InvalidInput
from conveyor.scaffold.yaml_text import scalar

SMOKE_TEST = "tests/test_smoke.py"
TESTS_COMMAND = "python -m pytest -q tests"
TEST_PACKAGE = "pytest"
#: The package an app of each type imports, listed in a requirements.txt `conveyor init` writes.
FRAMEWORK_PACKAGES: dict[AppType, str] = {
    AppType.FASTAPI: "fastapi",
    AppType.FLASK: "flask",
    AppType.DASH: "dash",
    AppType.SHINY: "shiny",
    AppType.STREAMLIT: "streamlit",
}


@dataclass(frozen=True)
class AppFileFields:
    """What conveyor.yml declares."""

    name: str
    type: AppType
    entrypoint: str
    requirements: str | None
    health: str
    tests: str | None
    branches: tuple[tuple[str, str], ...]


def app_file(fields: AppFileFields) -> str:
    """conveyor.yml, with a comment on each field; the entrypoint only when it is not the type's
    default."""
    lines = [
        "# conveyor.yml: how Conveyor builds, runs and checks this app (every field:",
        "# docs/bundles.md). Written by `conveyor init`; edit it freely.",
        f"name: {scalar(fields.name)}",
        f"type: {fields.type.value}",
    ]
    if fields.entrypoint != DEFAULT_ENTRYPOINTS[fields.type]:
        lines.append(f"entrypoint: {scalar(fields.entrypoint)}")
    if fields.requirements:
        lines.append(
            f"requirements: {scalar(fields.requirements)}  # locked into conveyor.lock: commit it"
        )
    lines += [
        f"health: {scalar(fields.health)}  # answers once the app is ready",
        "checks:  # every new release passes them before it takes traffic",
        "  smoke:",
        f"    - path: {scalar(fields.health)}",
        "      status: 200",
    ]
    if fields.tests:
        lines.append(
            f"  tests: {scalar(fields.tests)}  # run against the release (CONVEYOR_APP_URL)"
        )
    lines += ["ci:", "  branches:  # a push to the branch releases to the environment"]
    lines += [f"    {scalar(branch)}: {scalar(env)}" for branch, env in fields.branches]
    return "\n".join(lines) + "\n"


def config_file() -> str:
    """config.yml with the four sections and placeholders that show the shape of each kind of
    value, secrets read with !env."""
    return """\
# config.yml: this app's settings, one section per environment (docs/config.md).
# In the app: `from conveyor import config`, then `config.get("log_level")`.
# Conveyor sets CONVEYOR_ENV (and R_CONFIG_ACTIVE, for R) to the environment a release
# runs in. Every section is merged over `default`, so each lists only what differs.
#
# Secrets do not belong in this file: `!env NAME` reads them from the environment, where
# `conveyor vars set APP NAME --secret --env prod` puts them for a release.

default:
  log_level: DEBUG
  # api_url: http://localhost:8000
  # api_key: !env [API_KEY, local-only-key]   # the fallback is for local runs only

dev:
  log_level: DEBUG

test:
  log_level: INFO
  # api_url: https://api-test.example.com

prod:
  log_level: WARNING
  # api_url: https://api.example.com
  # api_key: !env API_KEY   # no fallback: a release without the secret fails clearly
"""


def smoke_test(health: str) -> str:
    """tests/test_smoke.py: GET the health path of the release under test; only pytest and
    the standard library, so the app needs no other package for it."""
    return f'''\
"""Smoke test, written by `conveyor init`. Conveyor runs the tests in this directory against
every new release before it takes traffic (`checks.tests` in conveyor.yml), with
CONVEYOR_APP_URL set to that release's own address. To run them against the app on your
machine: CONVEYOR_APP_URL=http://127.0.0.1:8000 python -m pytest -q tests

They need only pytest and the standard library; add your own tests beside this one."""

import os
import urllib.error
import urllib.request

import pytest

APP_URL = os.environ.get("CONVEYOR_APP_URL", "").rstrip("/")
HEALTH_PATH = {health!r}

pytestmark = pytest.mark.skipif(
    not APP_URL, reason="CONVEYOR_APP_URL is not set: no running app to test"
)


def get(path: str) -> tuple[int, str]:
    """GET ``path`` from the app: the status and the body, error statuses included."""
    request = urllib.request.Request(APP_URL + path, headers={{"User-Agent": "smoke-test"}})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def test_the_app_answers():
    status, body = get(HEALTH_PATH)
    assert status == 200, f"GET {{HEALTH_PATH}} answered {{status}}: {{body[:200]}}"
'''


def new_requirements(app_type: AppType, *, tests: bool) -> str:
    """requirements.txt for an app that has none: its framework, and pytest for its tests."""
    lines = ["# The packages this app imports, one a line; `conveyor bundle` locks them."]
    if app_type in FRAMEWORK_PACKAGES:
        lines.append(FRAMEWORK_PACKAGES[app_type])
    if tests:
        lines.append(f"{TEST_PACKAGE}  # runs tests/ against every new release")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PytestRequirement:
    """Whether the app's requirements bring pytest, and what to do when they do not."""

    present: bool
    #: The requirements file's new text, with pytest added; None when it cannot be added here.
    updated: str | None = None
    #: Why it cannot be added here, and what to do instead.
    advice: str | None = None


def pytest_requirement(directory: Path, requirements: str) -> PytestRequirement:
    """Does ``requirements`` (relative to ``directory``) declare pytest? If not, the text that
    adds it (to a loose requirements file), or advice (for a lock or pyproject.toml)."""
    path = directory / requirements
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} cannot be read: {exc}") from None
    wanted = normalise_name(TEST_PACKAGE)
    name = Path(requirements).name
    if name in ("uv.lock", "pylock.toml", "pyproject.toml"):
        if wanted in _toml_names(name, text):
            return PytestRequirement(present=True)
        how = {
            "uv.lock": "`uv add pytest`",
            "pylock.toml": "add pytest where the lock is made, then lock again",
            "pyproject.toml": "add pytest to `dependencies` in its [project] table",
        }[name]
        return PytestRequirement(
            present=False,
            advice=f"{requirements} does not list pytest, which the tests check needs in the "
            f"app's runtime: {how}",
        )
    if wanted in requirement_names(text):
        return PytestRequirement(present=True)
    if is_fully_pinned(text):
        return PytestRequirement(
            present=False,
            advice=f"{requirements} is pinned with hashes, so pytest was not added to it: add "
            "it where the file is made (`uv pip compile --generate-hashes`)",
        )
    separator = "" if not text or text.endswith("\n") else "\n"
    return PytestRequirement(present=False, updated=f"{text}{separator}{TEST_PACKAGE}\n")


def _toml_names(file_name: str, text: str) -> set[str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return set()
    if file_name == "pyproject.toml":
        project = data.get("project")
        dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
        return requirement_names("\n".join(str(d) for d in dependencies))
    table = "package" if file_name == "uv.lock" else "packages"
    entries = data.get(table, [])
    return {
        normalise_name(str(entry["name"]))
        for entry in entries
        if isinstance(entry, dict) and "name" in entry
    }
