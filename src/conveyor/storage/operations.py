"""Operations and their logs in the metadata database. One running operation per
(app, environment) is enforced by a unique partial index, not by the server's memory."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError as DatabaseIntegrityError

from conveyor.domain.operations import Operation, OperationKind, OperationState
from conveyor.errors import NotFound, OperationInProgress
from conveyor.storage import schema
from conveyor.storage.log_lines import append_line, lines_after, recent_lines
from conveyor.storage.store import new_row_id, now

_T = schema.operations
#: The app and environment an operation over many of them (a repair) is recorded under.
EVERY_APP = EVERY_ENVIRONMENT = "*"


def start_operation(
    engine: Engine, kind: OperationKind, app: str, environment: str, started_by: str
) -> Operation:
    """Claim (app, environment) for a new operation, in its own committed transaction;
    OperationInProgress when another operation holds it."""
    try:
        with engine.begin() as connection:
            result = connection.execute(
                insert(_T).values(
                    kind=kind.value,
                    app=app,
                    environment=environment,
                    state=OperationState.RUNNING.value,
                    started_by=started_by,
                    started_at=now(),
                )
            )
            operation_id = new_row_id(result.inserted_primary_key)
    except DatabaseIntegrityError:
        with engine.connect() as connection:
            row = (
                connection.execute(
                    select(_T).where(
                        and_(
                            _T.c.app == app,
                            _T.c.environment == environment,
                            _T.c.state == "running",
                        )
                    )
                )
                .mappings()
                .first()
            )
        holder = (
            f"operation {row['id']} ({row['kind']} by {row['started_by']}, since "
            f"{row['started_at']})"
            if row
            else "another operation"
        )
        raise OperationInProgress(
            f"{app} in {environment} is busy: {holder} is running. Wait for it to finish "
            f"(`conveyor status {app}`), then try again."
        ) from None
    return get_operation(engine, operation_id)


def finish_operation(engine: Engine, operation_id: int, state: OperationState, result: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(_T)
            .where(and_(_T.c.id == operation_id, _T.c.state == OperationState.RUNNING.value))
            .values(state=state.value, result=result, finished_at=now())
        )


def append_log(engine: Engine, operation_id: int, line: str) -> None:
    append_line(engine, schema.operation_log, "operation", operation_id, line)


def log_lines(engine: Engine, operation_id: int, after: int = 0) -> list[tuple[int, str, str]]:
    """(id, at, line) of the operation's log lines after id ``after``, a page at most
    (PAGE_LINES): a client follows a running operation, or reads a long log, by asking again
    with the last id it saw."""
    return lines_after(engine, schema.operation_log, "operation", operation_id, after)


def recent_log(
    engine: Engine, operation_id: int, count: int
) -> tuple[list[tuple[int, str, str]], int]:
    """The operation's last ``count`` log lines (id, at, line) and how many came before them."""
    return recent_lines(engine, schema.operation_log, "operation", operation_id, count)


def get_operation(engine: Engine, operation_id: int) -> Operation:
    with engine.connect() as connection:
        row = connection.execute(select(_T).where(_T.c.id == operation_id)).mappings().first()
    if row is None:
        raise NotFound(f"there is no operation {operation_id}")
    return _operation(row)


def interrupt_running(engine: Engine) -> list[Operation]:
    """Mark every running operation interrupted (server start); return them."""
    with engine.begin() as connection:
        rows = connection.execute(select(_T).where(_T.c.state == "running")).mappings().all()
        connection.execute(
            update(_T)
            .where(_T.c.state == "running")
            .values(state="interrupted", finished_at=now(), result="the server stopped")
        )
    return [_operation(row) for row in rows]


def _operation(row: Any) -> Operation:
    return Operation(
        id=row["id"],
        kind=OperationKind(row["kind"]),
        app=row["app"],
        environment=row["environment"],
        state=OperationState(row["state"]),
        started_by=row["started_by"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
    )
