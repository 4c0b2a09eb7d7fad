"""Drift: the runtimes live releases run on, checked against their locks (a package installed
by hand, a file edited in place), and repair: rebuild a drifted runtime from its lock and move
its releases onto it with a normal blue-green switch (a release of kind `repair`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from conveyor.domain.operations import OperationKind, OperationState
from conveyor.domain.releases import Release, ReleaseKind
from conveyor.runtime.interface import Log, RuntimeState
from conveyor.services.context import Services
from conveyor.services.releasing import Outcome, Started, run_release
from conveyor.storage import catalog, operations, releases


@dataclass(frozen=True)
class RuntimeCheck:
    state: RuntimeState
    releases: list[Release]  # the live releases on this runtime

    @property
    def drifted(self) -> bool:
        return bool(self.state.problems)


def drift(services: Services, environment: str | None = None) -> list[RuntimeCheck]:
    """Every runtime a live release (in ``environment``, or anywhere) runs on."""
    with services.store.transaction() as connection:
        if environment is not None:
            catalog.get_environment(connection, environment)
        live = [
            r
            for r in releases.all_live(connection)
            if environment is None or r.environment == environment
        ]
    by_id = {r.id: r for r in live}
    return [
        RuntimeCheck(state, [by_id[i] for i in state.releases if i in by_id])
        for state in services.runtime.drift([r.id for r in live])
    ]


def start_repair(
    services: Services, environment: str | None, actor: str, started: Started
) -> list[Outcome]:
    """``repair`` as an operation clients follow (``started`` gets its id as soon as it holds
    the repair of ``environment``, or of every environment): its log says what it rebuilt and
    which release went live, each release also being an operation of its own."""
    engine = services.store.engine
    if environment is not None:
        with services.store.transaction() as connection:
            catalog.get_environment(connection, environment)
    operation = operations.start_operation(
        engine,
        OperationKind.REPAIR,
        operations.EVERY_APP,
        environment or operations.EVERY_ENVIRONMENT,
        actor,
    )
    started(operation.id)
    began = time.monotonic()

    def log(line: str) -> None:
        operations.append_log(engine, operation.id, f"[{time.monotonic() - began:6.2f}s] {line}")

    try:
        outcomes = repair(services, environment, actor, log)
    except Exception as exc:
        operations.finish_operation(engine, operation.id, OperationState.FAILED, str(exc))
        raise
    failed = [o for o in outcomes if not o.live]
    if not outcomes:
        state, result = OperationState.SUCCEEDED, "nothing has drifted; nothing to repair"
    elif failed:
        state = OperationState.FAILED
        result = f"{len(failed)} of {len(outcomes)} release(s) did not go live: " + "; ".join(
            f"{o.release.app} in {o.release.environment}: {o.message}" for o in failed
        )
    else:
        state = OperationState.SUCCEEDED
        result = f"repaired: {len(outcomes)} release(s) live on rebuilt runtimes"
    operations.finish_operation(engine, operation.id, state, result)
    return outcomes


def repair(services: Services, environment: str | None, actor: str, log: Log) -> list[Outcome]:
    """Rebuild each drifted runtime and release its live releases again on the clean one."""
    outcomes = []
    for found in drift(services, environment):
        if not found.drifted:
            continue
        log(f"runtime {found.state.runtime_id[:12]} has drifted; rebuilding it from its lock")
        services.runtime.rebuild(found.state.runtime_id, log)
        for release in found.releases:
            with services.store.transaction() as connection:
                target = catalog.get_environment(connection, release.environment)
                bundle = catalog.get_bundle(connection, release.app, release.bundle_id)
            outcome = run_release(
                services, environment=target, bundle=bundle, kind=ReleaseKind.REPAIR, actor=actor
            )
            log(f"{release.app} in {release.environment}: {outcome.message}")
            outcomes.append(outcome)
    return outcomes


class RecentDrift:
    """Which live releases run on a drifted runtime, for the board: checked at most every
    ``every`` seconds (a check hashes every file of each runtime), in whichever request asks
    first; the others use the last answer."""

    def __init__(self, every: float = 300.0) -> None:
        self.every = every
        self._checked_at: float | None = None
        self._problems: dict[int, str] = {}
        self._lock = threading.Lock()

    def problems(self, services: Services) -> dict[int, str]:
        """release id -> what drifted in its runtime, for live releases whose runtime did."""
        with self._lock:
            now = time.monotonic()
            if self._checked_at is None or now - self._checked_at >= self.every:
                self._problems = {
                    release.id: "; ".join(found.state.problems)
                    for found in drift(services)
                    if found.drifted
                    for release in found.releases
                }
                self._checked_at = now
            return dict(self._problems)
