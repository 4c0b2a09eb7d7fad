"""`connect(name)`: a SQLAlchemy engine for one of the environment's data connections that
enforces its access mode.

PostgreSQL, read-only: the session starts with ``default_transaction_read_only=on``, every
transaction begins with ``SET TRANSACTION READ ONLY`` (PostgreSQL then refuses to make it read
write), and where the environment declares a role, every connection ``SET ROLE``s to it — a role
with SELECT rights only, so even ``SET default_transaction_read_only = off`` cannot write.
SQLite, read-only: the file is opened with ``mode=ro``. A write that the database refuses for
these reasons is raised as ``ReadOnlyData`` naming the connection and the environment."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from conveyor.data.settings import Connection, DataSettings, settings
from conveyor.errors import DataError, ReadOnlyData

if TYPE_CHECKING:
    from sqlalchemy import Engine

_READ_ONLY_SQLSTATES = {"25006", "42501"}  # read_only_sql_transaction, insufficient_privilege
_engines: dict[tuple[str, str, str, str | None], Engine] = {}
_lock = threading.Lock()


def connections() -> dict[str, str]:
    """The environment's data connections: name -> access mode."""
    return {name: c.mode for name, c in settings().connections.items()}


def connect(name: str, **engine_options: Any) -> Engine:
    """The engine for data connection ``name``, one per process (``engine_options`` go to
    ``sqlalchemy.create_engine`` the first time)."""
    found = settings()
    connection = found.connections.get(name)
    if connection is None:
        declared = ", ".join(sorted(found.connections)) or "none"
        raise DataError(
            f"environment {found.environment} has no data connection {name!r} (it has: "
            f"{declared}); declare it under `data:` for this environment in the environments "
            "file"
        )
    key = (found.environment, name, connection.url, connection.role)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _engine(found, connection, engine_options)
    return engine


def _engine(found: DataSettings, connection: Connection, options: dict[str, Any]) -> Engine:
    try:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
    except ImportError:
        raise DataError(
            "conveyor.data.connect needs SQLAlchemy: add sqlalchemy (and your database's "
            "driver, e.g. psycopg[binary]) to the app's requirements"
        ) from None
    url = make_url(connection.url)
    backend = url.get_backend_name()
    if not connection.read_only:
        return create_engine(url, **options)
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise DataError(f"data connection {connection.name!r}: a read-only SQLite needs a file")
        url = url.set(database=f"file:{url.database}", query={"mode": "ro", "uri": "true"})
        engine = create_engine(url, **options)
    elif backend == "postgresql":
        arguments = dict(options.pop("connect_args", {}))
        arguments["options"] = (
            str(arguments.get("options", "")) + " -c default_transaction_read_only=on"
        ).strip()
        engine = create_engine(url, connect_args=arguments, **options)
        role = connection.role

        @event.listens_for(engine, "connect")
        def _session(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if role:
                    cursor.execute(f"SET ROLE {_quote(role)}")
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            finally:
                cursor.close()
            dbapi_connection.commit()

        @event.listens_for(engine, "begin")
        def _read_only_transaction(conn: Any) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    else:
        raise DataError(
            f"data connection {connection.name!r} is {backend}: Conveyor enforces read-only "
            "access on PostgreSQL and SQLite; declare it read-write, or use one of those"
        )

    @event.listens_for(engine, "handle_error")
    def _refused(context: Any) -> None:
        if _is_read_only_refusal(context.original_exception):
            statement = " ".join(str(context.statement or "").split())[:80]
            raise ReadOnlyData(
                f"data connection {connection.name!r} is read-only in environment "
                f"{found.environment}, so `{statement}` was refused and nothing was changed. "
                f"Conveyor opens it read-only here to protect the data it reaches"
                + (f" (as role {connection.role})" if connection.role else "")
                + "; write where the connection is read-write, and write files with "
                "conveyor.data.output_path()"
            ) from context.original_exception

    return engine


def _is_read_only_refusal(error: BaseException | None) -> bool:
    if error is None:
        return False
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if code in _READ_ONLY_SQLSTATES:
        return True
    name = getattr(error, "sqlite_errorname", "")
    return name.startswith("SQLITE_READONLY") or "readonly database" in str(error)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
