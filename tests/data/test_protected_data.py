"""conveyor.data against a real PostgreSQL with real roles, and a real SQLite file: the same
code writes in Prod and is refused everywhere it reads production data read-only, with rows
counted before and after every refused write."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from sqlalchemy import text

from conveyor import data
from conveyor.errors import DataError, ReadOnlyData
from tests.warehouse import WRITES

PG_URL = os.environ.get("CONVEYOR_TEST_DATABASE_URL")


def use(monkeypatch, environment: str, **connections: dict[str, object]) -> None:
    monkeypatch.setenv("CONVEYOR_ENV", environment)
    monkeypatch.setenv(
        "CONVEYOR_DATA",
        json.dumps({"environment": environment, "connections": connections}),
    )


@pytest.mark.parametrize("write", sorted(WRITES))
def test_test_reads_production_data_and_every_write_is_refused(monkeypatch, warehouse, write):
    use(monkeypatch, "test", warehouse=warehouse["test"])
    engine = data.connect("warehouse")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT sum(amount) FROM sales")).scalar_one() == 30
    before = warehouse["count"]()
    with pytest.raises(ReadOnlyData) as refused:
        with engine.begin() as connection:
            connection.execute(text(WRITES[write]))
    message = str(refused.value)
    assert "data connection 'warehouse' is read-only in environment test" in message
    assert "nothing was changed" in message
    assert warehouse["count"]() == before == (2, False)


@pytest.mark.parametrize(
    "escape",
    [
        "SET default_transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "RESET ROLE",
    ],
)
def test_turning_read_only_off_still_cannot_write(monkeypatch, warehouse, escape):
    use(monkeypatch, "test", warehouse=warehouse["test"])
    engine = data.connect("warehouse")
    with engine.connect() as connection:
        connection.execute(text(escape))
        connection.commit()
        with pytest.raises(ReadOnlyData):
            connection.execute(text(WRITES["insert"]))
        connection.rollback()
        # A later transaction on the same connection: read-only again from its first statement.
        with pytest.raises(ReadOnlyData):
            connection.execute(text(WRITES["delete"]))
    assert warehouse["count"]() == (2, False)


def test_the_same_code_writes_in_prod(monkeypatch, warehouse):
    use(monkeypatch, "prod", warehouse=warehouse["prod"])
    with data.connect("warehouse").begin() as connection:
        connection.execute(text(WRITES["insert"]))
        connection.execute(text(WRITES["create"]))
    assert warehouse["count"]() == (3, True)


def test_sqlite_read_only_and_read_write(monkeypatch, tmp_path):
    path = tmp_path / "sales.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE sales (region text, amount int)")
        connection.execute("INSERT INTO sales VALUES ('north', 10)")
    use(monkeypatch, "dev", sales={"url": f"sqlite:///{path}", "mode": "read-only"})
    engine = data.connect("sales")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM sales")).scalar_one() == 1
    for write in ("insert", "update", "delete", "create", "drop"):
        with pytest.raises(ReadOnlyData, match="read-only in environment dev"):
            with engine.begin() as connection:
                connection.execute(text(WRITES[write]))
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM sales").fetchone() == (1,)
    use(monkeypatch, "prod", sales={"url": f"sqlite:///{path}", "mode": "read-write"})
    with data.connect("sales").begin() as connection:
        connection.execute(text(WRITES["insert"]))
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM sales").fetchone() == (2,)


def test_undeclared_connections_and_settings_mistakes_are_clear(monkeypatch):
    use(monkeypatch, "test", warehouse={"url": "sqlite:////tmp/x.db", "mode": "read-only"})
    with pytest.raises(DataError, match="environment test has no data connection 'crm'.*warehouse"):
        data.connect("crm")
    assert data.connections() == {"warehouse": "read-only"}
    monkeypatch.setenv("CONVEYOR_DATA", "{not json")
    with pytest.raises(DataError, match="CONVEYOR_DATA is not valid JSON"):
        data.connect("warehouse")
    monkeypatch.setenv(
        "CONVEYOR_DATA", json.dumps({"connections": {"w": {"url": "x", "mode": "rw"}}})
    )
    with pytest.raises(DataError, match="use read-only or read-write"):
        data.connect("w")


def test_outputs_stay_inside_the_environments_location(monkeypatch, tmp_path):
    test_outputs, prod_outputs = tmp_path / "outputs" / "test", tmp_path / "outputs" / "prod"
    monkeypatch.setenv(
        "CONVEYOR_DATA", json.dumps({"environment": "test", "output": str(test_outputs)})
    )
    path = data.output_path("reports/2026/q3.csv")
    assert path == test_outputs.resolve() / "reports" / "2026" / "q3.csv"
    assert path.parent.is_dir() and not prod_outputs.exists()
    for bad in ("../prod/scores.csv", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(DataError):
            data.output_path(bad)
    (test_outputs / "link").symlink_to(prod_outputs, target_is_directory=True)
    with pytest.raises(DataError, match="resolves outside"):
        data.output_path("link/scores.csv")
    monkeypatch.setenv("CONVEYOR_DATA", json.dumps({"environment": "dev"}))
    with pytest.raises(DataError, match="no output location is declared for environment dev"):
        data.output_path("x.csv")


def test_the_read_only_role_holds_even_when_every_read_only_setting_is_undone(
    monkeypatch, warehouse
):
    """Below SQLAlchemy, on the driver's own connection, an app can turn off every read-only
    setting of the session; the role it was switched to still has SELECT rights only."""
    import psycopg

    use(monkeypatch, "test", warehouse=warehouse["test"])
    raw = data.connect("warehouse").raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        cursor.execute("SET default_transaction_read_only = off")
        raw.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cursor.execute(WRITES["insert"])
        raw.rollback()
    finally:
        raw.close()
    assert warehouse["count"]() == (2, False)
