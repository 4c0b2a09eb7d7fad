"""Audit events: an append-only record of every change, each event holding the hash of the one
before it, so an edited, removed or reordered event is found by `verify_chain`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


def event_hash(
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> str:
    body = json.dumps(
        [prev_hash, seq, at, actor, action, subject, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def verify_chain(events: Sequence[AuditEvent], head: tuple[int, str] | None = None) -> list[str]:
    """Every break in the chain, as sentences; empty when the log is intact.

    ``head`` is the (seq, hash) recorded with the newest event; it catches removal of the last
    events, which the chain alone cannot show.
    """
    problems: list[str] = []
    prev = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            problems.append(
                f"event {event.seq} is where event {expected_seq} should be: "
                f"events were removed or reordered"
            )
        if event.prev_hash != prev:
            problems.append(f"event {event.seq} does not follow the event before it")
        recomputed = event_hash(
            event.prev_hash,
            event.seq,
            event.at,
            event.actor,
            event.action,
            event.subject,
            event.details,
        )
        if recomputed != event.hash:
            problems.append(f"event {event.seq} was edited: its content does not match its hash")
        prev = event.hash
    if head is not None:
        last = (events[-1].seq, events[-1].hash) if events else (0, GENESIS)
        if last != head:
            problems.append(
                f"the newest event should be {head[0]} but is {last[0]}: events were removed"
            )
    return problems
