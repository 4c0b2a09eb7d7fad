"""Opening the metadata database: SQLite under CONVEYOR_HOME by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.errors import InvalidInput


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'conveyor.db'}"


def open_engine(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///PATH`` or ``postgresql://USER@HOST/DB``.

    SQLite gets WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE`` transactions (so two
    writers queue instead of failing half-way); PostgreSQL goes through psycopg 3.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            f"{url!r} is not a database URL; use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise InvalidInput(
        f"database {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
