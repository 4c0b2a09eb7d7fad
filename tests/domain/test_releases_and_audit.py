from __future__ import annotations

import pytest

from conveyor.domain.audit import AuditEvent, event_hash, verify_chain
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


def chain(count: int) -> list[AuditEvent]:
    events, prev = [], "0" * 64
    for seq in range(1, count + 1):
        digest = event_hash(prev, seq, f"t{seq}", "ana", "deploy", "x", {"n": seq})
        events.append(AuditEvent(seq, f"t{seq}", "ana", "deploy", "x", {"n": seq}, prev, digest))
        prev = digest
    return events


def test_audit_chain_detects_edit_removal_and_reorder():
    events = chain(4)
    assert verify_chain(events, head=(4, events[-1].hash)) == []
    edited = [*events]
    edited[1] = AuditEvent(2, "t2", "eve", "deploy", "x", {"n": 2}, events[0].hash, events[1].hash)
    assert verify_chain(edited) == ["event 2 was edited: its content does not match its hash"]
    assert verify_chain([events[0], events[2], events[3]])
    assert verify_chain([events[1], events[0], events[2], events[3]])
    assert verify_chain(events[:3], head=(4, events[-1].hash)) == [
        "the newest event should be 4 but is 3: events were removed"
    ]
