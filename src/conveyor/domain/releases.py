"""Releases: a bundle running in an environment, and the states it moves through."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conveyor.errors import InvalidTransition


class ReleaseState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    VERIFYING = "verifying"
    LIVE = "live"
    RETIRED = "retired"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in (ReleaseState.RETIRED, ReleaseState.FAILED)


class ReleaseKind(StrEnum):
    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    REPAIR = "repair"  # the same bundle again, on its runtime rebuilt from the lock


_ALLOWED: dict[ReleaseState, frozenset[ReleaseState]] = {
    ReleaseState.PENDING: frozenset({ReleaseState.STARTING, ReleaseState.FAILED}),
    ReleaseState.STARTING: frozenset({ReleaseState.VERIFYING, ReleaseState.FAILED}),
    ReleaseState.VERIFYING: frozenset({ReleaseState.LIVE, ReleaseState.FAILED}),
    ReleaseState.LIVE: frozenset({ReleaseState.RETIRED}),
    ReleaseState.RETIRED: frozenset(),
    ReleaseState.FAILED: frozenset(),
}


def check_transition(release_id: int, current: ReleaseState, target: ReleaseState) -> None:
    """Raise InvalidTransition unless a release may go from ``current`` to ``target``."""
    if target not in _ALLOWED[current]:
        allowed = ", ".join(sorted(_ALLOWED[current])) or "nothing (it is final)"
        raise InvalidTransition(
            f"release {release_id} is {current}; it cannot become {target} "
            f"(from {current} it can become: {allowed})"
        )


class CheckKind(StrEnum):
    HEALTH = "health"
    SMOKE = "smoke"
    TESTS = "tests"


@dataclass(frozen=True)
class CheckResult:
    kind: CheckKind
    passed: bool
    output: str = ""


@dataclass(frozen=True)
class Release:
    id: int
    app: str
    environment: str
    bundle_id: str
    kind: ReleaseKind
    state: ReleaseState
    created_by: str
    created_at: str
    reason: str = ""
    verified: bool = False
    steps: tuple[tuple[str, float], ...] = ()
    #: When `conveyor gc` removed the files of the release's bundle (it can no longer be
    #: rolled back to; deploying it again brings it back); None while they are kept.
    files_removed_at: str | None = None
