"""Audit events: an append-only record of every change. Each event holds the MAC of the one
before it, so an edited, removed or reordered event is found by `verify_chain`.

The MAC is an HMAC-SHA-256 under a key kept outside the database (``sign``): someone who can
only write the database cannot rewrite an event and recompute a chain that verifies. Events
written before a server was upgraded to keyed MACs (``seq < keyed_from``) carry a plain SHA-256
instead; they stay verifiable, are reported as unkeyed, and cannot be rewritten either once a
keyed event follows them, because that event's MAC covers the last plain hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

#: Computes the keyed MAC (hex) of an event's canonical bytes.
Sign = Callable[[bytes], str]


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


def event_body(
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> bytes:
    """The canonical bytes an event's MAC (or, before keying, its hash) is computed over."""
    return json.dumps(
        [prev_hash, seq, at, actor, action, subject, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    ).encode("utf-8")


def chain_value(event: AuditEvent, sign: Sign, keyed_from: int) -> str:
    """What ``event.hash`` must be: its MAC from ``keyed_from`` on, its plain hash before."""
    body = event_body(
        event.prev_hash,
        event.seq,
        event.at,
        event.actor,
        event.action,
        event.subject,
        event.details,
    )
    return sign(body) if event.seq >= keyed_from else hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Verification:
    problems: list[str]
    #: Events written before the chain was keyed (checked with the plain rule).
    unkeyed: int


def verify_chain(
    events: Sequence[AuditEvent],
    sign: Sign,
    keyed_from: int = 1,
    head: tuple[int, str] | None = None,
) -> Verification:
    """Every break in the chain, as sentences naming the event; empty when intact.

    ``head`` is the (seq, MAC) recorded with the newest event; it catches removal of the last
    events, which the chain alone cannot show (see docs/security.md for what it cannot catch).
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
        if chain_value(event, sign, keyed_from) != event.hash:
            problems.append(
                f"event {event.seq} was edited: its content does not match its "
                + ("MAC" if event.seq >= keyed_from else "hash")
            )
        prev = event.hash
    if head is not None:
        last = (events[-1].seq, events[-1].hash) if events else (0, GENESIS)
        if last != head:
            problems.append(
                f"the newest event should be {head[0]} but is {last[0]}: events were removed"
            )
    unkeyed = sum(1 for e in events if e.seq < keyed_from)
    return Verification(problems, unkeyed)
