"""Retention: what `conveyor gc` keeps and what it may remove, decided from facts alone.

Kept, per app and environment: the live release, releases on their way (pending, starting,
verifying), and the rollback targets: the newest retired release of each of the last
``keep_releases`` distinct bundles that were live there before the live one (redeploying the
live bundle or repairing it adds retired releases of the live bundle, which are no rollback
target and count for nothing); the bundles of all of these and every runtime their locks use.
Kept besides: a bundle awaiting promotion (verified and live upstream, not yet in the
environment downstream; a bundle approved for an environment it has not been live in yet), a
bundle that was never live anywhere (never released, or its releases all failed) until
``keep_logs`` after its upload or its last release, and everything of an app and environment
while an operation runs there. Everything else is removable: directories left by releases that
no longer run, runtimes no kept bundle's lock uses, bundle blobs no kept bundle uses, log lines
and release log files older than ``keep_logs``, and run outputs beyond the last ``keep_runs``
runs (never the one a release serves, never a running one). A ``.serving-<release>`` pointer
of a release that no longer runs (and is neither live nor on its way) is stale: it holds no
run output and goes.

``plan`` is pure: the service gathers an ``Inventory`` (database and disk) and removes what the
``Plan`` lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from conveyor.errors import InvalidInput

DEFAULT_KEEP_RELEASES = 5
DEFAULT_KEEP_RUNS = 5
DEFAULT_KEEP_LOGS = 30 * 86400  # seconds

_ON_THEIR_WAY = ("pending", "starting", "verifying")
_WERE_LIVE = ("live", "retired")


@dataclass(frozen=True)
class RetentionSettings:
    keep_releases: int = DEFAULT_KEEP_RELEASES
    keep_runs: int = DEFAULT_KEEP_RUNS
    keep_logs: int = DEFAULT_KEEP_LOGS  # seconds

    def __post_init__(self) -> None:
        if self.keep_releases < 1:
            raise InvalidInput(
                f"keep releases: {self.keep_releases} leaves nothing to roll back to; keep at "
                "least 1 earlier release"
            )
        if self.keep_runs < 1:
            raise InvalidInput(f"keep runs: {self.keep_runs}; keep at least 1 run's output")
        if self.keep_logs < 3600:
            raise InvalidInput("keep logs: keep logs for at least an hour (e.g. 30d)")

    def describe(self) -> str:
        return (
            f"the live release and the last {self.keep_releases} earlier bundles for rollback, "
            f"the last "
            f"{self.keep_runs} runs' outputs, logs for {_days(self.keep_logs)}"
        )


class Group(StrEnum):
    RELEASES = "releases"
    RUNTIMES = "runtimes"
    BUNDLES = "bundles"
    LOGS = "logs"
    RUN_OUTPUTS = "run outputs"
    #: compiled files in the shared bytecode store that no runtime links any more
    BYTECODE = "bytecode"


# --- facts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseFact:
    id: int
    app: str
    environment: str
    bundle: str
    state: str
    verified: bool
    created_at: str = ""  # ISO 8601 UTC


@dataclass(frozen=True)
class BundleFact:
    id: str
    app: str
    blob: str
    size: int
    lock_sha256: str | None
    created_at: str
    removed: bool  # gc removed its blob before
    on_disk: bool  # its blob is in the store


@dataclass(frozen=True)
class RuntimeFact:
    name: str  # directory name under runtimes/
    lock_sha256: str | None  # from its marker; None for a replaced (retired) runtime
    size: int


@dataclass(frozen=True)
class RunFact:
    id: int
    app: str
    environment: str
    state: str
    output_size: int | None  # None: no output directory


@dataclass(frozen=True)
class LogFact:
    """Log lines of a finished operation or run, or one release's log file."""

    kind: str  # "operation", "run" or "release"
    owner: int
    finished_at: str  # ISO 8601 UTC; for a file, when it was last written
    size: int
    lines: int = 0


@dataclass(frozen=True)
class Inventory:
    releases: tuple[ReleaseFact, ...] = ()
    bundles: tuple[BundleFact, ...] = ()
    #: (bundle, environment) of every approval
    approvals: tuple[tuple[str, str], ...] = ()
    #: environment -> the environment it takes promotions from
    promotes_from: dict[str, str] = field(default_factory=dict)
    #: (app, environment) where an operation runs now
    busy: frozenset[tuple[str, str]] = frozenset()
    #: releases whose processes run here now
    running: frozenset[int] = frozenset()
    runtimes: tuple[RuntimeFact, ...] = ()
    #: release id -> size of its directory under releases/
    release_dirs: dict[int, int] = field(default_factory=dict)
    runs: tuple[RunFact, ...] = ()
    #: (release, run) of every ``.serving-<release>`` pointer: the run whose output the
    #: release serves
    pointers: tuple[tuple[int, int], ...] = ()
    logs: tuple[LogFact, ...] = ()


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    group: Group
    what: str  # for people: "release 3 of hello in dev"
    size: int
    #: what the remover acts on: a release or run id, a bundle id, a runtime directory, or the
    #: (kind, owner) of a log
    key: str | int | tuple[str, int]
    detail: str = ""
    #: how many files it stands for (the bytecode store's unused files are one item)
    count: int = 1


@dataclass(frozen=True)
class Plan:
    items: tuple[Item, ...]
    kept_releases: frozenset[int]
    kept_bundles: frozenset[str]
    #: releases whose ``.serving-<release>`` pointer is stale (they no longer run)
    stale_pointers: frozenset[int] = frozenset()

    def of(self, group: Group) -> list[Item]:
        return [item for item in self.items if item.group is group]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.items)


def plan(inventory: Inventory, settings: RetentionSettings, now: datetime) -> Plan:
    """What gc removes from ``inventory`` under ``settings`` at ``now`` (a UTC datetime)."""
    kept_releases = _kept_releases(inventory, settings.keep_releases)
    kept_bundles = _kept_bundles(
        inventory, kept_releases, now - timedelta(seconds=settings.keep_logs)
    )
    bundles = _bundles(inventory, kept_bundles)
    items: list[Item] = []
    items += _releases(inventory, kept_releases, {str(item.key) for item in bundles})
    items += _runtimes(inventory, kept_bundles)
    items += bundles
    items += _logs(inventory, now - timedelta(seconds=settings.keep_logs))
    serving = _serving(inventory)
    items += _run_outputs(inventory, settings.keep_runs, frozenset(serving.values()))
    stale = frozenset(release for release, _ in inventory.pointers if release not in serving)
    return Plan(tuple(items), frozenset(kept_releases), frozenset(kept_bundles), stale)


def _kept_releases(inventory: Inventory, keep: int) -> set[int]:
    kept: set[int] = set(inventory.running)
    by_pair: dict[tuple[str, str], list[ReleaseFact]] = {}
    for release in inventory.releases:
        by_pair.setdefault((release.app, release.environment), []).append(release)
    for pair, found in by_pair.items():
        if pair in inventory.busy:  # an operation runs there: leave it all alone
            kept.update(r.id for r in found)
            continue
        newest_first = sorted(found, key=lambda r: r.id, reverse=True)
        kept.update(r.id for r in newest_first if r.state == "live" or r.state in _ON_THEIR_WAY)
        # Rollback targets: what a rollback would release, distinct bundles other than the live
        # one (a redeploy or repair of the live bundle retires releases of that same bundle).
        targets = {r.bundle for r in found if r.state == "live"}
        counted = 0
        for release in newest_first:
            if counted == keep:
                break
            if release.state == "retired" and release.bundle not in targets:
                targets.add(release.bundle)
                kept.add(release.id)
                counted += 1
    return kept


def _kept_bundles(
    inventory: Inventory, kept_releases: set[int], uploaded_since: datetime
) -> set[str]:
    kept = {r.bundle for r in inventory.releases if r.id in kept_releases}
    kept |= _awaiting_promotion(inventory)
    was_live = {(r.bundle, r.environment) for r in inventory.releases if r.state in _WERE_LIVE}
    kept |= {b for b, environment in inventory.approvals if (b, environment) not in was_live}
    # Never live anywhere (never released, or every release of it failed): kept for the log
    # age after its upload or its last release, so it can be fixed and released again.
    became_live = {r.bundle for r in inventory.releases if r.state in _WERE_LIVE}
    last_release: dict[str, str] = {}
    for release in inventory.releases:
        last_release[release.bundle] = max(last_release.get(release.bundle, ""), release.created_at)
    cutoff = uploaded_since.isoformat()
    kept |= {
        b.id
        for b in inventory.bundles
        if b.id not in became_live and max(b.created_at, last_release.get(b.id, "")) >= cutoff
    }
    return kept


def _awaiting_promotion(inventory: Inventory) -> set[str]:
    """Bundles a promotion would take: live in an environment and never live yet in the one
    that promotes from it (they are kept as live releases too; said here as the rule)."""
    was_live = {(r.bundle, r.environment) for r in inventory.releases if r.state in _WERE_LIVE}
    found = set()
    for release in inventory.releases:
        if release.state != "live":
            continue
        for downstream, upstream in inventory.promotes_from.items():
            if upstream == release.environment and (release.bundle, downstream) not in was_live:
                found.add(release.bundle)
    return found


def _releases(inventory: Inventory, kept_releases: set[int], bundles_going: set[str]) -> list[Item]:
    """Releases no longer kept whose files go: their directory (left by a server that stopped
    without stopping them) and their bundle, when it goes."""
    items = []
    for release in sorted(inventory.releases, key=lambda r: r.id):
        if release.id in kept_releases:
            continue
        bundle_goes = release.bundle in bundles_going
        directory = inventory.release_dirs.get(release.id)
        if not bundle_goes and directory is None:
            continue
        detail = []
        if bundle_goes:
            detail.append(f"bundle {release.bundle[:10]}")
        if directory is not None:
            detail.append(f"releases/{release.id}")
        items.append(
            Item(
                Group.RELEASES,
                f"release {release.id} of {release.app} in {release.environment}",
                directory or 0,
                release.id,
                ", ".join(detail),
            )
        )
    known = {r.id for r in inventory.releases}
    for release_id, size in sorted(inventory.release_dirs.items()):
        if release_id not in known and release_id not in inventory.running:
            items.append(
                Item(Group.RELEASES, f"releases/{release_id}", size, release_id, "no such release")
            )
    return items


def _removable_bundle(bundle: BundleFact, kept_bundles: set[str]) -> bool:
    return bundle.id not in kept_bundles and bundle.on_disk and not bundle.removed


def _runtimes(inventory: Inventory, kept_bundles: set[str]) -> list[Item]:
    locks = {b.lock_sha256 for b in inventory.bundles if b.id in kept_bundles and b.lock_sha256}
    items = []
    for runtime in sorted(inventory.runtimes, key=lambda r: r.name):
        if runtime.lock_sha256 is not None and runtime.lock_sha256 in locks:
            continue
        why = "replaced by a rebuild" if runtime.lock_sha256 is None else "no kept release uses it"
        items.append(
            Item(Group.RUNTIMES, f"runtime {runtime.name[:12]}", runtime.size, runtime.name, why)
        )
    return items


def _bundles(inventory: Inventory, kept_bundles: set[str]) -> list[Item]:
    """Blobs of bundles no longer kept, unless a kept bundle has the same blob."""
    kept_blobs = {b.blob for b in inventory.bundles if b.id in kept_bundles}
    items = []
    for bundle in sorted(inventory.bundles, key=lambda b: b.created_at):
        if _removable_bundle(bundle, kept_bundles) and bundle.blob not in kept_blobs:
            items.append(
                Item(
                    Group.BUNDLES,
                    f"bundle {bundle.id[:10]} of {bundle.app}",
                    bundle.size,
                    bundle.id,
                )
            )
    return items


def _logs(inventory: Inventory, cutoff: datetime) -> list[Item]:
    before = cutoff.isoformat()
    items = []
    for log in inventory.logs:
        if log.finished_at >= before:
            continue
        if log.kind == "release" and log.owner in inventory.running:
            continue
        what = {"operation": "log of operation", "run": "log of run", "release": "log of release"}
        lines = f"{log.lines} lines" if log.kind != "release" else "file"
        items.append(
            Item(
                Group.LOGS, f"{what[log.kind]} {log.owner}", log.size, (log.kind, log.owner), lines
            )
        )
    return items


def _serving(inventory: Inventory) -> dict[int, int]:
    """release -> the run whose output it serves, for the pointers that still count: those of
    releases running here, live, or on their way (a live release not yet started again after a
    restart serves its pointer's run once it is)."""
    current = {r.id for r in inventory.releases if r.state == "live" or r.state in _ON_THEIR_WAY}
    return {
        release: run
        for release, run in inventory.pointers
        if release in inventory.running or release in current
    }


def _run_outputs(inventory: Inventory, keep: int, serving: frozenset[int]) -> list[Item]:
    by_pair: dict[tuple[str, str], list[RunFact]] = {}
    for run in inventory.runs:
        by_pair.setdefault((run.app, run.environment), []).append(run)
    items = []
    for pair, found in sorted(by_pair.items()):
        if pair in inventory.busy:
            continue
        newest_first = sorted(found, key=lambda r: r.id, reverse=True)
        for run in newest_first[keep:]:
            if run.output_size is None or run.state == "running":
                continue
            if run.id in serving:
                continue
            items.append(
                Item(
                    Group.RUN_OUTPUTS,
                    f"output of run {run.id} of {run.app} in {run.environment}",
                    run.output_size,
                    run.id,
                )
            )
    return items


def show_bytes(size: int) -> str:
    """A size for people: 0 B, 812 B, 4.2 KiB, 17.0 MiB, 1.3 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _days(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    return f"{seconds // 3600} hours"


def total(items: Iterable[Item]) -> int:
    return sum(item.size for item in items)
