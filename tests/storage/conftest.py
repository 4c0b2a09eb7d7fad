"""A real metadata store on SQLite and on PostgreSQL for every storage test.

PostgreSQL comes from CONVEYOR_TEST_DATABASE_URL; each test gets its own schema, dropped
afterwards. Without the variable the PostgreSQL runs are skipped with a reason, except in CI
(CI=true), where they must run and fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conveyor.domain.environments import DEFAULT_ENVIRONMENTS
from conveyor.storage import catalog
from conveyor.storage.store import Store

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
