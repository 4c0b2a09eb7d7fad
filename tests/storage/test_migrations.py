from __future__ import annotations

import pytest
from sqlalchemy import inspect, update

from conveyor.errors import StorageError
from conveyor.storage import schema
from conveyor.storage.database import open_engine
from conveyor.storage.migrations import LATEST, current_version, migrate


def test_migrate_applies_once_and_matches_the_schema(database_url):
    engine = open_engine(database_url)
    try:
        assert migrate(engine) == list(range(1, LATEST + 1))
        assert migrate(engine) == []
        with engine.connect() as connection:
            assert current_version(connection) == LATEST
            found = inspect(connection)
            for table in schema.metadata.sorted_tables:
                columns = {c["name"] for c in found.get_columns(table.name)}
                assert columns == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()


def test_a_newer_database_is_refused(database_url):
    engine = open_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            table = schema.schema_migrations
            connection.execute(
                update(table).where(table.c.version == LATEST).values(version=LATEST + 5)
            )
        with pytest.raises(StorageError, match="newer than this Conveyor knows"):
            migrate(engine)
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_unsupported_database_url():
    from conveyor.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not supported"):
        open_engine("mysql://root@localhost/x")
    with pytest.raises(InvalidInput, match="not a database URL"):
        open_engine("nonsense")


def test_store_defaults_to_sqlite_under_conveyor_home(tmp_path, monkeypatch):
    from conveyor.storage.store import Store

    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    store = Store.open()
    try:
        assert store.engine.url.database == str(tmp_path / "home" / "conveyor.db")
        assert store.blobs.root == tmp_path / "home" / "blobs"
    finally:
        store.close()


def test_a_version_1_database_is_upgraded_in_place(database_url):
    from sqlalchemy import delete, text

    engine = open_engine(database_url)
    try:
        migrate(engine)
        # Make it look like a database written by version 1 of the schema.
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE releases DROP COLUMN steps"))
            connection.execute(
                delete(schema.schema_migrations).where(schema.schema_migrations.c.version > 1)
            )
        assert migrate(engine) == list(range(2, LATEST + 1))
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("releases")}
        assert "steps" in columns
    finally:
        engine.dispose()
