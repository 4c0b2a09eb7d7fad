"""What `conveyor gc` reads from the metadata database, and the rows it changes: bundles marked
removed (their rows stay, for history), and old log lines deleted (operations and runs stay)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, and_, delete, func, select, update

from conveyor.domain.retention import LogFact, ReleaseFact
from conveyor.storage import schema
from conveyor.storage.store import now


def release_facts(connection: Connection) -> list[ReleaseFact]:
    table = schema.releases
    rows = connection.execute(
        select(
            table.c.id,
            table.c.app,
            table.c.environment,
            table.c.bundle,
            table.c.state,
            table.c.verified,
            table.c.created_at,
        ).order_by(table.c.id)
    ).all()
    return [
        ReleaseFact(
            r.id, r.app, r.environment, r.bundle, r.state, bool(r.verified), str(r.created_at)
        )
        for r in rows
    ]


def bundle_rows(connection: Connection) -> list[dict[str, object]]:
    """id, app, blob, size, manifest (JSON text), created_at, removed_at of every bundle."""
    table = schema.bundles
    rows = connection.execute(
        select(
            table.c.id,
            table.c.app,
            table.c.blob,
            table.c.size,
            table.c.manifest,
            table.c.created_at,
            table.c.removed_at,
        )
    ).mappings()
    return [dict(row) for row in rows]


def approvals(connection: Connection) -> list[tuple[str, str]]:
    table = schema.approvals
    rows = connection.execute(select(table.c.bundle, table.c.environment).distinct()).all()
    return [(r.bundle, r.environment) for r in rows]


def busy(connection: Connection) -> frozenset[tuple[str, str]]:
    """(app, environment) where an operation or a run is running now."""
    found: set[tuple[str, str]] = set()
    for table in (schema.operations, schema.runs):
        rows = connection.execute(
            select(table.c.app, table.c.environment).where(table.c.state == "running")
        ).all()
        found.update((r.app, r.environment) for r in rows)
    return frozenset(found)


def run_facts(connection: Connection) -> list[tuple[int, str, str, str]]:
    """(id, app, environment, state) of every run."""
    table = schema.runs
    rows = connection.execute(
        select(table.c.id, table.c.app, table.c.environment, table.c.state).order_by(table.c.id)
    ).all()
    return [(r.id, r.app, r.environment, r.state) for r in rows]


def finished_logs(connection: Connection) -> list[LogFact]:
    """The log lines of every finished operation and run that still has some: how many, their
    size, and when the operation or run finished."""
    facts = []
    for kind, owners, log, owner_column, finished in (
        (
            "operation",
            schema.operations,
            schema.operation_log,
            schema.operation_log.c.operation,
            schema.operations.c.finished_at,
        ),
        ("run", schema.runs, schema.run_log, schema.run_log.c.run, schema.runs.c.ended_at),
    ):
        rows = connection.execute(
            select(
                owner_column,
                finished,
                func.count(log.c.id),
                func.coalesce(func.sum(func.length(log.c.line)), 0),
            )
            .join(owners, owners.c.id == owner_column)
            .where(and_(owners.c.state != "running", finished.is_not(None)))
            .group_by(owner_column, finished)
        ).all()
        facts += [LogFact(kind, int(r[0]), str(r[1]), int(r[3]), int(r[2])) for r in rows]
    return facts


def mark_removed(connection: Connection, bundle_ids: Iterable[str]) -> None:
    """Say the bundles' blobs are gone (before they go: a failed removal leaves a blob marked
    removed, never a blob missing unmarked)."""
    ids = list(bundle_ids)
    if ids:
        table = schema.bundles
        connection.execute(update(table).where(table.c.id.in_(ids)).values(removed_at=now()))


def stored_blob(connection: Connection, bundle_id: str) -> tuple[str, str | None] | None:
    """(blob, removed_at) of a bundle, or None when there is no such bundle."""
    table = schema.bundles
    row = connection.execute(
        select(table.c.blob, table.c.removed_at).where(table.c.id == bundle_id)
    ).first()
    return None if row is None else (str(row.blob), row.removed_at)


def restore(connection: Connection, bundle_id: str, blob: str, size: int) -> None:
    """The bundle was uploaded again: its blob is back, as stored now (the same bundle id may
    come in an archive compressed differently, so with another blob)."""
    table = schema.bundles
    connection.execute(
        update(table).where(table.c.id == bundle_id).values(blob=blob, size=size, removed_at=None)
    )


def delete_log_lines(engine: Engine, kind: str, owners: Iterable[int]) -> None:
    ids = list(owners)
    if not ids:
        return
    log, column = (
        (schema.operation_log, schema.operation_log.c.operation)
        if kind == "operation"
        else (schema.run_log, schema.run_log.c.run)
    )
    with engine.begin() as connection:
        for start in range(0, len(ids), 500):
            connection.execute(delete(log).where(column.in_(ids[start : start + 500])))
