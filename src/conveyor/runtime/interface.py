"""The runtime interface: what services ask of whatever runs releases (local processes now,
Kubernetes later, an in-memory one in tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conveyor.domain.environments import Environment
from conveyor.domain.releases import CheckResult

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReleasePlan:
    """Everything a runtime needs to start one release."""

    release_id: int
    app: str
    environment: Environment
    bundle_id: str
    manifest: Mapping[str, Any]
    archive: Path  # the verified bundle archive
    variables: Mapping[str, str] = field(default_factory=dict)
    #: The unprivileged user the app runs as in this environment, where the runtime runs
    #: apps as their own users (a root server's sandbox).
    uid: int | None = None


@dataclass(frozen=True)
class Instance:
    """A started release, reachable on its own address before it takes traffic."""

    release_id: int
    app: str
    environment: str
    address: str


@dataclass(frozen=True)
class RuntimeState:
    """One runtime checked against its lock: ``problems`` is empty when it matches."""

    runtime_id: str
    releases: tuple[int, ...]
    problems: tuple[str, ...]
    summary: str = ""


class Runtime(Protocol):
    def start(self, plan: ReleasePlan, log: Log, *, lazily: bool = False) -> Instance:
        """Start the release beside the live one; RuntimeFailure when it cannot start.
        ``lazily``: a release that sleeps when idle starts asleep (ready to run, its processes
        started by its first request), as after a server restart."""
        ...

    def check(self, instance: Instance, plan: ReleasePlan, log: Log) -> list[CheckResult]:
        """Run the release's required checks against its own address."""
        ...

    def route(self, instance: Instance) -> None:
        """Send the environment's traffic for the app to ``instance`` (one atomic swap)."""
        ...

    def stop(self, release_id: int, log: Log) -> None:
        """Drain and stop a release's instance; stopping one not running is a no-op."""
        ...

    def run(self, release_id: int, run_id: int, log: Log) -> None:
        """Run a running report or job release again (its output served from the next
        request when it succeeds); RuntimeFailure says why a run failed."""
        ...

    def run_output(self, environment: str, app: str, run_id: int) -> Path | None:
        """The page a run rendered (its index.html), or None when it rendered none."""
        ...

    def drift(self, release_ids: Sequence[int]) -> list[RuntimeState]:
        """The runtimes these running releases use, each checked against its lock."""
        ...

    def rebuild(self, runtime_id: str, log: Log) -> None:
        """Rebuild a drifted runtime from its lock in place (releases then move to it)."""
        ...

    def runtime_of(self, release_id: int) -> str | None:
        """What a running release runs on, e.g. "runtime 9f1761125758, Python 3.11.7 on
        linux_x86_64", or None when it is not running here."""
        ...

    def asleep(self, release_id: int) -> bool:
        """Whether a routed release is asleep: its processes stopped after a while without
        requests, until the next one wakes it."""
        ...

    def degraded(self, release_id: int) -> str | None:
        """Why a running release is degraded (its processes keep crashing), or None."""
        ...

    def isolation(self, release_id: int | None = None) -> str:
        """How the release's processes are isolated (how this runtime isolates apps, without
        a release), for people: e.g. "bubblewrap, as user 3000002; memory 1 GiB"."""
        ...

    def repaired(self, release_id: int) -> str | None:
        """The last time a running release's files were found changed and restored from its
        bundle, and what had changed; None when they never were."""
        ...

    def read_log(self, release_id: int, after: int = 0) -> tuple[int, str]:
        """What the release's processes printed after offset ``after``, and the offset to ask
        from next time (empty for a release that printed nothing or is unknown)."""
        ...

    def environments_changed(self, environments: Sequence[Environment]) -> None:
        """The environments' settings changed (applied from an environments file): what the
        releases already running there take from them (``sleep_after``) applies from now."""
        ...
