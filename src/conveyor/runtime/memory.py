"""An in-memory runtime: keeps instances and routes as state, runs nothing. Used by the
service tests until releases run as real processes, and honest about what it is told to fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.domain.environments import Environment
from conveyor.domain.releases import CheckKind, CheckResult
from conveyor.errors import RuntimeFailure
from conveyor.runtime.interface import Instance, Log, ReleasePlan, RuntimeState


@dataclass
class MemoryRuntime:
    #: bundle id -> the check kinds that fail for it
    failing_checks: dict[str, set[CheckKind]] = field(default_factory=dict)
    #: bundle ids whose releases fail to start
    failing_starts: set[str] = field(default_factory=set)
    #: (app, environment) whose route swap fails
    failing_routes: set[tuple[str, str]] = field(default_factory=set)
    running: dict[int, Instance] = field(default_factory=dict)
    routes: dict[tuple[str, str], int] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
    #: release id -> the plan it was started with (its variables, manifest, ...)
    plans: dict[int, ReleasePlan] = field(default_factory=dict)
    #: what the in-memory runtime pretends has drifted from its lock
    drifted: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    #: release id -> why it is degraded
    degraded_releases: dict[int, str] = field(default_factory=dict)
    #: Releases asleep (as a local runtime puts idle ones to sleep)
    sleeping: set[int] = field(default_factory=set)
    #: release id -> what its (imagined) processes printed
    output: dict[int, str] = field(default_factory=dict)
    #: release id -> when and why its files were restored from its bundle
    repairs: dict[int, str] = field(default_factory=dict)
    #: bundle ids whose runs fail
    failing_runs: set[str] = field(default_factory=set)
    #: release id -> the runs asked of it, in order
    runs: dict[int, list[int]] = field(default_factory=dict)
    #: (environment, app, run id) -> the page the run rendered
    run_pages: dict[tuple[str, str, int], Path] = field(default_factory=dict)
    _next_port: int = 20000

    def start(self, plan: ReleasePlan, log: Log, *, lazily: bool = False) -> Instance:
        if plan.bundle_id in self.failing_starts:
            raise RuntimeFailure(f"release {plan.release_id} exited during start (exit code 1)")
        self._next_port += 1
        instance = Instance(
            plan.release_id, plan.app, plan.environment.name, f"http://127.0.0.1:{self._next_port}"
        )
        self.running[plan.release_id] = instance
        self.plans[plan.release_id] = plan
        self.output[plan.release_id] = f"{plan.app} release {plan.release_id} listening\n"
        log(f"started release {plan.release_id} at {instance.address}")
        return instance

    def check(self, instance: Instance, plan: ReleasePlan, log: Log) -> list[CheckResult]:
        failing = self.failing_checks.get(plan.bundle_id, set())
        results = []
        for kind in plan.manifest.get("checks", ["health"]):
            check = CheckKind(kind)
            passed = check not in failing
            results.append(CheckResult(check, passed, "ok" if passed else f"{kind} failed"))
        return results

    def route(self, instance: Instance) -> None:
        key = (instance.app, instance.environment)
        if key in self.failing_routes:
            raise RuntimeFailure(f"could not swap the route of {instance.app} in {key[1]}")
        self.routes[key] = instance.release_id

    def drift(self, release_ids: Sequence[int]) -> list[RuntimeState]:
        """Every running release on one in-memory runtime, drifted by ``drifted``."""
        running = tuple(r for r in release_ids if r in self.running)
        if not running:
            return []
        return [RuntimeState("memory", running, tuple(self.drifted))]

    def rebuild(self, runtime_id: str, log: Log) -> None:
        self.drifted.clear()
        self.rebuilt.append(runtime_id)
        log(f"rebuilt runtime {runtime_id}")

    def runtime_of(self, release_id: int) -> str | None:
        plan = self.plans.get(release_id)
        if plan is None or release_id not in self.running:
            return None
        lock = plan.manifest.get("lock") or {}
        return f"in memory, lock {str(lock.get('sha256', 'none'))[:12]}"

    def environments_changed(self, environments: Sequence[Environment]) -> None:
        return None  # nothing of it runs: there is no idle time to count

    def asleep(self, release_id: int) -> bool:
        return release_id in self.sleeping

    def degraded(self, release_id: int) -> str | None:
        return self.degraded_releases.get(release_id)

    def isolation(self, release_id: int | None = None) -> str:
        return "none: the in-memory runtime runs nothing"

    def repaired(self, release_id: int) -> str | None:
        return self.repairs.get(release_id)

    def read_log(self, release_id: int, after: int = 0) -> tuple[int, str]:
        text = self.output.get(release_id, "")
        return len(text), text[after:]

    def run_output(self, environment: str, app: str, run_id: int) -> Path | None:
        return self.run_pages.get((environment, app, run_id))

    def run(self, release_id: int, run_id: int, log: Log) -> None:
        plan = self.plans.get(release_id)
        if plan is None or release_id not in self.running:
            raise RuntimeFailure(f"release {release_id} is not a running report or job here")
        self.runs.setdefault(release_id, []).append(run_id)
        log(f"run {run_id} of release {release_id}")
        if plan.bundle_id in self.failing_runs:
            raise RuntimeFailure(f"run {run_id} failed (exit code 1)")

    def stop(self, release_id: int, log: Log) -> None:
        if self.running.pop(release_id, None) is not None:
            self.stopped.append(release_id)
            log(f"stopped release {release_id}")
