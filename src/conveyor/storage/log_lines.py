"""The log lines of an operation or a run: one table each, the same shape (id, owner, at,
line), appended as they are written and read after the last id a follower saw."""

from __future__ import annotations

from sqlalchemy import Engine, Table, and_, func, insert, select

from conveyor.storage.store import now


def append_line(engine: Engine, table: Table, owner: str, owner_id: int, line: str) -> None:
    with engine.begin() as connection:
        connection.execute(insert(table).values({owner: owner_id, "at": now(), "line": line}))


#: The most lines one read returns: a follower asks again from the last id it got, so a log
#: of millions of lines is read, sent and shown a page at a time, never whole.
PAGE_LINES = 5000


def lines_after(
    engine: Engine, table: Table, owner: str, owner_id: int, after: int, limit: int = PAGE_LINES
) -> list[tuple[int, str, str]]:
    """(id, at, line) of ``owner_id``'s lines after line id ``after``, at most ``limit``."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.at, table.c.line)
            .where(and_(table.c[owner] == owner_id, table.c.id > after))
            .order_by(table.c.id)
            .limit(limit)
        ).all()
    return [(row.id, row.at, row.line) for row in rows]


def recent_lines(
    engine: Engine, table: Table, owner: str, owner_id: int, count: int
) -> tuple[list[tuple[int, str, str]], int]:
    """(id, at, line) of ``owner_id``'s last ``count`` lines, oldest first, and how many
    lines came before them."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.at, table.c.line)
            .where(table.c[owner] == owner_id)
            .order_by(table.c.id.desc())
            .limit(count)
        ).all()
        earlier = 0
        if len(rows) == count:
            earlier = connection.execute(
                select(func.count())
                .select_from(table)
                .where(and_(table.c[owner] == owner_id, table.c.id < rows[-1].id))
            ).scalar_one()
    return [(row.id, row.at, row.line) for row in reversed(rows)], earlier


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
