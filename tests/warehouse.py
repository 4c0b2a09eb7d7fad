"""A production database for conveyor.data's tests: a real PostgreSQL database with a table,
a read-only role and a login role that can only use it (NOINHERIT), dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

PG_URL = os.environ.get("CONVEYOR_TEST_DATABASE_URL")

WRITES = {
    "insert": "INSERT INTO sales (region, amount) VALUES ('west', 1)",
    "update": "UPDATE sales SET amount = amount + 1",
    "delete": "DELETE FROM sales",
    "create": "CREATE TABLE stolen (x int)",
    "drop": "DROP TABLE sales",
}


@pytest.fixture
def warehouse() -> Iterator[dict[str, Any]]:
    """A production database with a read-only role and a login role that can only use it."""
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CONVEYOR_TEST_DATABASE_URL must be set in CI")
        pytest.skip("CONVEYOR_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    suffix = uuid.uuid4().hex[:8]
    name, reader, login = f"warehouse_{suffix}", f"reporting_ro_{suffix}", f"app_{suffix}"
    admin = create_engine(
        make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        connection.execute(text(f'CREATE ROLE "{reader}" NOLOGIN'))
        connection.execute(text(f'CREATE ROLE "{login}" LOGIN NOINHERIT IN ROLE "{reader}"'))
    database_url = make_url(PG_URL).set(drivername="postgresql+psycopg", database=name)
    owner = create_engine(database_url)
    with owner.begin() as connection:
        connection.execute(text("CREATE TABLE sales (region text, amount int)"))
        connection.execute(text("INSERT INTO sales VALUES ('north', 10), ('south', 20)"))
        connection.execute(text("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
        connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{reader}", "{login}"'))
        connection.execute(text(f'GRANT SELECT ON sales TO "{reader}"'))
    owner.dispose()
    try:
        yield {
            "prod": {
                "url": database_url.render_as_string(hide_password=False),
                "mode": "read-write",
            },
            "test": {
                "url": database_url.set(username=login).render_as_string(hide_password=False),
                "mode": "read-only",
                "role": reader,
            },
            "count": lambda: _count(database_url),
        }
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE "{login}"'))
            connection.execute(text(f'DROP ROLE "{reader}"'))
        admin.dispose()


def _count(url: URL) -> tuple[int, bool]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM sales")).scalar_one()
            stolen = connection.execute(
                text("SELECT to_regclass('stolen') IS NOT NULL")
            ).scalar_one()
        return int(rows), bool(stolen)
    finally:
        engine.dispose()
