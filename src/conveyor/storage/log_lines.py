"""The log lines of an operation or a run: one table each, the same shape (id, owner, at,
line), appended as they are written and read after the last id a follower saw."""

from __future__ import annotations

from sqlalchemy import Engine, Table, and_, insert, select

from conveyor.storage.store import now


def append_line(engine: Engine, table: Table, owner: str, owner_id: int, line: str) -> None:
    with engine.begin() as connection:
        connection.execute(insert(table).values({owner: owner_id, "at": now(), "line": line}))


def lines_after(
    engine: Engine, table: Table, owner: str, owner_id: int, after: int
) -> list[tuple[int, str, str]]:
    """(id, at, line) of ``owner_id``'s lines after line id ``after``."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.at, table.c.line)
            .where(and_(table.c[owner] == owner_id, table.c.id > after))
            .order_by(table.c.id)
        ).all()
    return [(row.id, row.at, row.line) for row in rows]


def last_lines(engine: Engine, table: Table, owner: str, owner_id: int, count: int) -> list[str]:
    """The last ``count`` lines of ``owner_id``'s log, oldest first (only those are read)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.line)
            .where(table.c[owner] == owner_id)
            .order_by(table.c.id.desc())
            .limit(count)
        ).all()
    return [row.line for row in reversed(rows)]
