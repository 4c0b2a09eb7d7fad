"""The audit chain on a real database: any edited, removed or reordered event is found, and
someone who can write only the database cannot rewrite history into a chain that verifies."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import delete, select, update

from conveyor.domain.audit import event_body
from conveyor.storage import audit, schema


def write_events(store, count: int = 4) -> None:
    for index in range(count):
        with store.transaction() as connection:
            audit.record(connection, "ana", "deploy", f"hello/dev#{index}", {"n": index})


def problems(store) -> list[str]:
    with store.transaction() as connection:
        return audit.verify(connection).problems


def test_an_intact_chain_verifies(store):
    write_events(store)
    assert problems(store) == []
    with store.transaction() as connection:
        events = audit.events(connection)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[1].prev_hash == events[0].hash


def test_an_edited_event_is_found(store):
    write_events(store)
    with store.transaction() as connection:
        connection.execute(
            update(schema.audit_events).where(schema.audit_events.c.seq == 2).values(actor="eve")
        )
    assert problems(store) == ["event 2 was edited: its content does not match its MAC"]


def test_history_rewritten_with_recomputed_hashes_does_not_verify(store):
    """The attack on a plain hash chain: edit an event, recompute every hash after it and the
    head, all from the database alone. Without the key the MACs cannot be recomputed."""
    write_events(store)
    table = schema.audit_events
    with store.transaction() as connection:
        rows = connection.execute(select(table).order_by(table.c.seq)).mappings().all()
        prev = "0" * 64
        for row in rows:
            actor = "eve" if row["seq"] == 2 else row["actor"]
            body = event_body(
                prev,
                row["seq"],
                row["at"],
                actor,
                row["action"],
                row["subject"],
                json.loads(row["details"]),
            )
            digest = hashlib.sha256(body).hexdigest()
            connection.execute(
                update(table)
                .where(table.c.seq == row["seq"])
                .values(actor=actor, prev_hash=prev, hash=digest)
            )
            prev = digest
        connection.execute(update(schema.audit_head).values(seq=rows[-1]["seq"], hash=prev))
    found = problems(store)
    assert "event 1 was edited: its content does not match its MAC" in found
    assert "event 2 was edited: its content does not match its MAC" in found


def test_a_removed_event_is_found(store):
    write_events(store)
    with store.transaction() as connection:
        connection.execute(delete(schema.audit_events).where(schema.audit_events.c.seq == 2))
    found = problems(store)
    assert any("events were removed or reordered" in p for p in found)


def test_removing_the_newest_events_is_found(store):
    write_events(store)
    with store.transaction() as connection:
        connection.execute(delete(schema.audit_events).where(schema.audit_events.c.seq >= 3))
    assert problems(store) == ["the newest event should be 4 but is 2: events were removed"]


def test_reordered_events_are_found(store):
    write_events(store)
    table = schema.audit_events
    with store.transaction() as connection:
        connection.execute(update(table).where(table.c.seq == 2).values(seq=-2))
        connection.execute(update(table).where(table.c.seq == 3).values(seq=2))
        connection.execute(update(table).where(table.c.seq == -2).values(seq=3))
    assert problems(store)


def test_an_event_rolled_back_with_its_change_leaves_no_trace(store):
    write_events(store, 1)
    try:
        with store.transaction() as connection:
            audit.record(connection, "ana", "promote", "hello/prod", {})
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    assert problems(store) == []
    with store.transaction() as connection:
        assert len(audit.events(connection)) == 1


def test_events_are_exported_after_a_number(store):
    write_events(store, 5)
    with store.transaction() as connection:
        assert [e.seq for e in audit.events(connection, since=3)] == [4, 5]
        assert [e.seq for e in audit.events(connection, limit=2)] == [4, 5]
