"""The Store: one metadata database and one blob store, and the transactions services use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event

from conveyor.errors import StorageError
from conveyor.storage.blobs import BlobStore
from conveyor.storage.database import open_engine, sqlite_url
from conveyor.storage.keyring import Keyring, keys_path
from conveyor.storage.migrations import migrate

#: Where a connection of a Store's engine carries the Store's keyring (``keys_of``).
_KEYS = "conveyor.keyring"


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


def keys_of(connection: Connection) -> Keyring:
    """The keyring of the Store whose engine made ``connection``: what encrypts secrets and
    MACs audit events written through it."""
    keys = connection.info.get(_KEYS)
    if not isinstance(keys, Keyring):
        raise StorageError("this database connection has no keys: open it with Store.open")
    return keys


def bind_keys(connection: Connection, keys: Keyring) -> None:
    connection.info[_KEYS] = keys


class Store:
    """Metadata (SQLite by default, PostgreSQL by URL) plus content-addressed blobs, and the
    keys (outside the database) that seal its secrets and its audit chain."""

    def __init__(self, engine: Engine, blobs: BlobStore, keys: Keyring) -> None:
        self.engine = engine
        self.blobs = blobs
        self.keys = keys
        event.listen(engine, "engine_connect", lambda connection: bind_keys(connection, keys))

    @classmethod
    def open(cls, home: Path | None = None, database_url: str | None = None) -> Store:
        """Open (and migrate) the store under ``home`` (default: ``default_home()``); metadata
        goes to ``database_url`` when given, else to ``home/conveyor.db``. The keys come from
        ``keys_path(home)``; a first start creates them, an upgraded database is secured with
        them (see at_rest.py)."""
        from conveyor.storage.at_rest import open_keyring  # it records audit events: a cycle

        home = home or default_home()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = open_engine(database_url or sqlite_url(home))
        try:
            migrate(engine)
            keys = open_keyring(engine, keys_path(home))
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, BlobStore(home / "blobs"), keys)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """All changes inside commit together or not at all."""
        with self.engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()
