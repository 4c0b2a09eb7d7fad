"""Shared fixtures: every test gets a clean process environment for the variables Conveyor reads
and a temporary working directory, so no test sees another's config file or active name; and
`store` gives a real metadata store on SQLite and on PostgreSQL.

PostgreSQL comes from CONVEYOR_TEST_DATABASE_URL; each test gets its own schema, dropped
afterwards. Without the variable the PostgreSQL runs are skipped with a reason, except in CI
(CI=true), where they must run and fail instead."""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conveyor.domain.environments import DEFAULT_ENVIRONMENTS
from conveyor.storage import catalog
from conveyor.storage.store import Store
from tests.warehouse import warehouse  # noqa: F401 - a fixture for tests/data and tests/e2e

# One uv cache for the whole suite and across runs, so runtime builds and locks do not
# download the same wheels again (CI runs on the same machine as the sessions).
os.environ.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "conveyor-tests" / "uv"))

CONVEYOR_VARIABLES = (
    "CONVEYOR_ENV",
    "R_CONFIG_ACTIVE",
    "CONVEYOR_CONFIG_FILE",
    "R_CONFIG_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in CONVEYOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # A test that runs `conveyor serve` in this process leaves the server's umask (077)
    # behind; the next test starts with the umask the run began with.
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="config.yml") -> path: a dedented file under tmp_path."""

    def _write(text: str, name: str = "config.yml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return _write


POSTGRES_URL = os.environ.get("CONVEYOR_TEST_DATABASE_URL")


def postgres_schema_url() -> Iterator[str]:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("CONVEYOR_TEST_DATABASE_URL is not set; CI must run the PostgreSQL tests")
        pytest.skip("PostgreSQL tests skipped: set CONVEYOR_TEST_DATABASE_URL to run them")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {name}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "home", database_url)
    with opened.transaction() as connection:
        catalog.save_environments(connection, DEFAULT_ENVIRONMENTS)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def conveyor(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """conveyor(*args) -> (exit code, stdout, stderr) of the `conveyor` command, run in process
    through conveyor.cli.main, so errors show as a person sees them."""
    from conveyor.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
