"""The audit log in the metadata database: append inside the transaction of the change it
records; verify the whole chain; export it for another store. Each event is chained with a MAC
under the audit key of the store's keyring (storage/keyring.py), never kept in the database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select, update

from conveyor.domain.audit import AuditEvent, Verification, chain_value, verify_chain
from conveyor.storage import schema
from conveyor.storage.store import keys_of, now


def record(
    connection: Connection, actor: str, action: str, subject: str, details: dict[str, Any]
) -> AuditEvent:
    """Append one event, chained to the newest; call inside the change's own transaction."""
    keys = keys_of(connection)
    head = schema.audit_head
    seq, prev_hash = connection.execute(
        select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
    ).one()
    # Round-trip details through JSON so the stored text and the signed value agree.
    clean = json.loads(json.dumps(details, sort_keys=True, default=str))
    event = AuditEvent(
        seq=seq + 1,
        at=now(),
        actor=actor,
        action=action,
        subject=subject,
        details=clean,
        prev_hash=prev_hash,
    )
    digest = chain_value(event, keys.mac, keys.audit_from)
    connection.execute(
        insert(schema.audit_events).values(
            seq=event.seq,
            at=event.at,
            actor=actor,
            action=action,
            subject=subject,
            details=json.dumps(clean, sort_keys=True),
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    connection.execute(update(head).where(head.c.id == 1).values(seq=event.seq, hash=digest))
    return AuditEvent(**{**event.__dict__, "hash": digest})


def events(connection: Connection, limit: int | None = None, since: int = 0) -> list[AuditEvent]:
    """Events after ``since`` in order; with ``limit``, only the newest that many."""
    table = schema.audit_events
    query = select(table).where(table.c.seq > since).order_by(table.c.seq)
    if limit is not None:
        query = select(table).where(table.c.seq > since).order_by(table.c.seq.desc()).limit(limit)
    rows = connection.execute(query).mappings().all()
    found = [
        AuditEvent(
            seq=r["seq"],
            at=r["at"],
            actor=r["actor"],
            action=r["action"],
            subject=r["subject"],
            details=json.loads(r["details"]),
            prev_hash=r["prev_hash"],
            hash=r["hash"],
        )
        for r in rows
    ]
    return sorted(found, key=lambda e: e.seq)


def head(connection: Connection) -> tuple[int, str]:
    table = schema.audit_head
    seq, digest = connection.execute(select(table.c.seq, table.c.hash).where(table.c.id == 1)).one()
    return int(seq), str(digest)


def verify(connection: Connection) -> Verification:
    """Every break in the stored chain (empty problems when the log is intact)."""
    keys = keys_of(connection)
    return verify_chain(events(connection), keys.mac, keys.audit_from, head=head(connection))


def keyed_from(connection: Connection) -> int:
    """The first event chained with the keyed MAC."""
    return keys_of(connection).audit_from
