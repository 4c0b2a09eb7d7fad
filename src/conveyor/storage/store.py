"""The Store: one metadata database and one blob store, and the transactions services use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from conveyor.errors import StorageError
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import open_engine, sqlite_url
from conveyor.storage.migrations import migrate


def default_home() -> Path:
    """Where Conveyor keeps its state: $CONVEYOR_HOME, else ~/.conveyor."""
    configured = os.environ.get("CONVEYOR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".conveyor"


def now() -> str:
    """The current time as stored: ISO 8601 in UTC, microseconds, so it sorts as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_row_id(key: Any) -> int:
    """The integer id the database gave a row just inserted."""
    if not key or key[0] is None:
        raise StorageError("the database returned no id for a new row")
    return int(key[0])


class Store:
    """Metadata (SQLite by default, PostgreSQL by URL) plus content-addressed blobs."""

    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    @classmethod
    def open(cls, home: Path | None = None, database_url: str | None = None) -> Store:
        """Open (and migrate) the store under ``home`` (default: ``default_home()``); metadata
        goes to ``database_url`` when given, else to ``home/conveyor.db``."""
        home = home or default_home()
        home.mkdir(parents=True, exist_ok=True)
        engine = open_engine(database_url or sqlite_url(home))
        migrate(engine)
        return cls(engine, BlobStore(home / "blobs"))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """All changes inside commit together or not at all."""
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()
