from __future__ import annotations

import hashlib
import hmac

import pytest

from conveyor.domain.audit import AuditEvent, chain_value, event_body, verify_chain
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, next_environment
from conveyor.domain.releases import ReleaseState, check_transition
from conveyor.errors import InvalidTransition

LEGAL = {
    ("pending", "starting"),
    ("pending", "failed"),
    ("starting", "verifying"),
    ("starting", "failed"),
    ("verifying", "live"),
    ("verifying", "failed"),
    ("live", "retired"),
}


@pytest.mark.parametrize("target", list(ReleaseState))
@pytest.mark.parametrize("current", list(ReleaseState))
def test_release_state_machine(current, target):
    if (current.value, target.value) in LEGAL:
        check_transition(1, current, target)
    else:
        with pytest.raises(InvalidTransition, match=f"release 1 is {current}"):
            check_transition(1, current, target)


def test_terminal_states():
    assert {s for s in ReleaseState if s.is_terminal()} == {
        ReleaseState.RETIRED,
        ReleaseState.FAILED,
    }


def test_next_environment():
    assert next_environment(DEFAULT_ENVIRONMENTS, "dev").name == "test"
    assert next_environment(DEFAULT_ENVIRONMENTS, "test").name == "prod"
    assert next_environment(DEFAULT_ENVIRONMENTS, "prod") is None


KEY = b"k" * 32


def sign(body: bytes) -> str:
    return hmac.new(KEY, body, hashlib.sha256).hexdigest()


def chain(count: int, keyed_from: int = 1) -> list[AuditEvent]:
    events, prev = [], "0" * 64
    for seq in range(1, count + 1):
        event = AuditEvent(seq, f"t{seq}", "ana", "deploy", "x", {"n": seq}, prev)
        digest = chain_value(event, sign, keyed_from)
        events.append(AuditEvent(seq, f"t{seq}", "ana", "deploy", "x", {"n": seq}, prev, digest))
        prev = digest
    return events


def test_audit_chain_detects_edit_removal_and_reorder():
    events = chain(4)
    assert verify_chain(events, sign, head=(4, events[-1].hash)).problems == []
    edited = [*events]
    edited[1] = AuditEvent(2, "t2", "eve", "deploy", "x", {"n": 2}, events[0].hash, events[1].hash)
    assert verify_chain(edited, sign).problems == [
        "event 2 was edited: its content does not match its MAC"
    ]
    assert verify_chain([events[0], events[2], events[3]], sign).problems
    assert verify_chain([events[1], events[0], events[2], events[3]], sign).problems
    assert verify_chain(events[:3], sign, head=(4, events[-1].hash)).problems == [
        "the newest event should be 4 but is 3: events were removed"
    ]


def test_a_chain_made_with_another_key_does_not_verify():
    events = chain(3)
    other = verify_chain(events, lambda body: hmac.new(b"x" * 32, body, "sha256").hexdigest())
    assert len(other.problems) == 3


def test_events_before_the_chain_was_keyed_verify_with_the_plain_hash():
    events = chain(5, keyed_from=4)
    result = verify_chain(events, sign, keyed_from=4)
    assert result.problems == [] and result.unkeyed == 3
    # The first keyed event's MAC covers the last plain hash: the history before it cannot be
    # rewritten either, even though its rule needs no key.
    rewritten = chain(3)  # the same events, recomputed (here with a different rule)
    tampered = [*rewritten, *events[3:]]
    assert (
        "event 4 does not follow the event before it"
        in verify_chain(tampered, sign, keyed_from=4).problems
    )
    body = event_body("0" * 64, 1, "t1", "ana", "deploy", "x", {"n": 1})
    assert hashlib.sha256(body).hexdigest() == events[0].hash
