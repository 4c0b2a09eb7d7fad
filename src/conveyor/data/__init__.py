"""Protected data access for apps: `from conveyor import data`.

The environment an app runs in declares named data connections (URL, access mode, optionally a
read-only role) and an output location; Conveyor hands them to the app's process in
``CONVEYOR_DATA``. Then::

    engine = data.connect("warehouse")          # a SQLAlchemy engine that enforces the mode
    frame = pandas.read_sql("select ...", engine)
    frame.to_csv(data.output_path("scores.csv"))

A read-only connection (production data seen from Dev and Test) refuses every write with
``ReadOnlyData``, naming the connection, the environment and why, and changes nothing:
PostgreSQL connections run every transaction read-only and, where declared, as the read-only
role; SQLite files are opened with ``mode=ro``.

Needs only the standard library, PyYAML (for conveyor.config) and the app's own SQLAlchemy and
database driver, imported when a connection is made."""

from __future__ import annotations

from conveyor.data.connections import connect, connections
from conveyor.data.outputs import output_path
from conveyor.data.settings import DataSettings, settings
from conveyor.errors import DataError, ReadOnlyData

__all__ = [
    "DataError",
    "DataSettings",
    "ReadOnlyData",
    "connect",
    "connections",
    "output_path",
    "settings",
]
