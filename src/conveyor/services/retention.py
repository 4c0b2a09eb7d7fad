"""`conveyor gc`: gather what the server has (metadata and files under its home), plan with
domain/retention.py what goes, and remove it, while no release is being started (the files
guard), so a release never loses its bundle or runtime between being planned and running (a dry
run only reads, and holds nothing off).

A bundle's row stays when its blob goes (``removed_at`` says when), so history, audit and a
rollback to it say what happened; uploading the bundle again brings it back. Operations and runs
keep their rows when their log lines go."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.domain.retention import (
    BundleFact,
    Group,
    Inventory,
    Item,
    LogFact,
    Plan,
    RetentionSettings,
    RunFact,
    RuntimeFact,
    plan,
    show_bytes,
)
from conveyor.runtime.adapters.base import SERVING_POINTER
from conveyor.runtime.bytecode import BytecodeStore
from conveyor.runtime.installed import freed_by, installed_runtimes, remove_runtime
from conveyor.runtime.read_only_trees import remove_tree
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, retention

log = logging.getLogger("conveyor.retention")


@dataclass(frozen=True)
class Outcome:
    """What a gc found removable and, unless it was a dry run, removed."""

    plan: Plan
    dry_run: bool
    settings: RetentionSettings
    #: items that could not be removed, with why
    failed: tuple[tuple[Item, str], ...] = ()
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def removed(self) -> list[Item]:
        failed = {id(item) for item, _ in self.failed}
        return [item for item in self.plan.items if id(item) not in failed]

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.removed)

    def summary(self) -> str:
        """One line: what went (or would go) and the space it frees."""
        verb = "would remove" if self.dry_run else "removed"
        if not self.plan.items:
            return "gc: nothing to remove"
        counts = []
        for group in Group:
            count = sum(i.count for i in self.removed if i.group is group)
            if count:
                counts.append(f"{count} {_noun(group, count)}")
        failed = len(self.failed)
        if not counts:
            return (
                f"gc removed nothing: {failed} {'item' if failed == 1 else 'items'} could not "
                "be removed (the server's log says why)"
            )
        return f"gc {verb} {', '.join(counts)}; {show_bytes(self.freed)} freed" + (
            f"; {failed} could not be removed" if failed else ""
        )


class Retention:
    """Retention for one server: its home, its settings, its services."""

    def __init__(
        self,
        services: Services,
        home: Path,
        settings: RetentionSettings,
        *,
        bytecode: BytecodeStore | None = None,
    ) -> None:
        self.services = services
        self.home = home
        self.settings = settings
        #: The runtimes' shared compiled files (none: not trimmed)
        self.bytecode = bytecode

    def collect(self, actor: str, *, dry_run: bool = False, now: datetime | None = None) -> Outcome:
        """Plan, and unless ``dry_run`` remove; a gc that removed something is audited. A dry
        run only reads: it holds no release off."""
        if dry_run:
            found = self._plan(now)
            return Outcome(found, True, self.settings)
        with self.services.files.collecting():
            found = self._plan(now)
            failed = self._remove(found)
        outcome = Outcome(found, False, self.settings, tuple(failed))
        if outcome.removed:
            with self.services.store.transaction() as connection:
                audit.record(
                    connection,
                    actor,
                    "server.gc",
                    "server",
                    {
                        "removed": {
                            str(group): [i.what for i in outcome.removed if i.group is group]
                            for group in Group
                        },
                        "freed_bytes": outcome.freed,
                        "failed": len(outcome.failed),
                    },
                )
        return outcome

    def _plan(self, now: datetime | None) -> Plan:
        """The domain's plan, and the shared compiled files no runtime will link once the
        runtimes it removes are gone (one item: they are many, and go together)."""
        found = plan(self.inventory(), self.settings, now or datetime.now(UTC))
        if self.bytecode is None:
            return found
        going = [self.home / "runtimes" / str(item.key) for item in found.of(Group.RUNTIMES)]
        unused = self.bytecode.unused(going)
        if not unused:
            return found
        count = len(unused)
        item = Item(
            Group.BYTECODE,
            f"{count} compiled {'file' if count == 1 else 'files'} no runtime uses",
            sum(size for _, size in unused),
            "bytecode",
            str(self.bytecode.root),
            count=count,
        )
        return replace(found, items=(*found.items, item))

    # --- what there is ---------------------------------------------------------------------

    def inventory(self) -> Inventory:
        with self.services.store.transaction() as connection:
            releases = retention.release_facts(connection)
            bundle_rows = retention.bundle_rows(connection)
            approvals = retention.approvals(connection)
            busy = retention.busy(connection)
            environments = catalog.list_environments(connection)
            runs = retention.run_facts(connection)
            logs = retention.finished_logs(connection)
        running = frozenset(
            r.id for r in releases if self.services.runtime.runtime_of(r.id) is not None
        )
        pointers, outputs = self._run_outputs()
        return Inventory(
            releases=tuple(releases),
            bundles=tuple(self._bundle(row) for row in bundle_rows),
            approvals=tuple(approvals),
            promotes_from={
                e.name: e.policy.promotes_from for e in environments if e.policy.promotes_from
            },
            busy=busy,
            running=running,
            runtimes=tuple(
                RuntimeFact(r.name, r.lock_sha256, freed_by(r.path))
                for r in installed_runtimes(self.home / "runtimes")
            ),
            release_dirs=self._release_dirs(),
            runs=tuple(
                RunFact(run_id, app, environment, state, outputs.get((environment, app, run_id)))
                for run_id, app, environment, state in runs
            ),
            pointers=tuple(sorted(pointers)),
            logs=tuple(logs) + tuple(self._release_logs()),
        )

    def _bundle(self, row: dict[str, object]) -> BundleFact:
        manifest = json.loads(str(row["manifest"]))
        lock = manifest.get("lock") or {}
        blob = str(row["blob"])
        return BundleFact(
            id=str(row["id"]),
            app=str(row["app"]),
            blob=blob,
            size=int(str(row["size"])),
            lock_sha256=lock.get("sha256"),
            created_at=str(row["created_at"]),
            removed=row["removed_at"] is not None,
            on_disk=self.services.store.blobs.exists(blob),
        )

    def _release_dirs(self) -> dict[int, int]:
        root = self.home / "releases"
        if not root.is_dir():
            return {}
        return {
            int(entry.name): freed_by(entry)
            for entry in root.iterdir()
            if entry.name.isdigit() and entry.is_dir()
        }

    def _run_outputs(self) -> tuple[set[tuple[int, int]], dict[tuple[str, str, int], int]]:
        """(release, run) of every ``.serving-<release>`` pointer, and each run's output size
        by (environment, app, run id), under reports/<environment>/<app>/<run id>/."""
        pointers: set[tuple[int, int]] = set()
        for release_id, entry in self._pointer_files():
            try:
                pointers.add((release_id, int(entry.read_text().strip())))
            except (OSError, ValueError):
                continue
        sizes: dict[tuple[str, str, int], int] = {}
        for environment, app in self._runs_dirs():
            for entry in app.iterdir():
                if entry.name.isdigit() and entry.is_dir():
                    sizes[(environment.name, app.name, int(entry.name))] = freed_by(entry)
        return pointers, sizes

    def _runs_dirs(self) -> list[tuple[Path, Path]]:
        """(environment, app) directories under reports/."""
        root = self.home / "reports"
        if not root.is_dir():
            return []
        return [
            (environment, app)
            for environment in root.iterdir()
            if environment.is_dir()
            for app in environment.iterdir()
            if app.is_dir()
        ]

    def _pointer_files(self) -> list[tuple[int, Path]]:
        """(release, path) of every ``.serving-<release>`` pointer."""
        found = []
        for _, app in self._runs_dirs():
            for entry in app.iterdir():
                number = entry.name.removeprefix(SERVING_POINTER)
                if entry.name.startswith(SERVING_POINTER) and number.isdigit():
                    found.append((int(number), entry))
        return found

    def _release_logs(self) -> list[LogFact]:
        """One fact per release log (``run/logs/<id>.log`` and its rotated ``.log.N``): its
        size, and when it was last written."""
        root = self.home / "run" / "logs"
        if not root.is_dir():
            return []
        by_release: dict[int, tuple[int, float]] = {}
        for entry in root.iterdir():
            number, dot, rest = entry.name.partition(".")
            if not number.isdigit() or not rest.startswith("log") or not dot:
                continue
            try:
                info = entry.lstat()
            except OSError:  # rotated or removed meanwhile
                continue
            size, modified = by_release.get(int(number), (0, 0.0))
            by_release[int(number)] = (size + info.st_size, max(modified, info.st_mtime))
        return [
            LogFact(
                "release",
                release_id,
                datetime.fromtimestamp(modified, UTC).isoformat(timespec="microseconds"),
                size,
            )
            for release_id, (size, modified) in sorted(by_release.items())
        ]

    # --- removing --------------------------------------------------------------------------

    def _remove(self, found: Plan) -> list[tuple[Item, str]]:
        failed: list[tuple[Item, str]] = []
        bundles = found.of(Group.BUNDLES)
        # Marked first: a blob that fails to go is marked removed, never missing unmarked.
        with self.services.store.transaction() as connection:
            retention.mark_removed(connection, [str(item.key) for item in bundles])
            blobs = {
                row["id"]: str(row["blob"])
                for row in retention.bundle_rows(connection)
                if row["id"] in {item.key for item in bundles}
            }
        for item in bundles:
            self._try(failed, item, self._remove_blob, blobs[str(item.key)])
        for item in found.of(Group.RELEASES):
            self._try(failed, item, remove_tree, self.home / "releases" / str(item.key))
        for item in found.of(Group.RUNTIMES):
            self._try(failed, item, remove_runtime, self.home / "runtimes", str(item.key))
        if self.bytecode is not None:
            for item in found.of(Group.BYTECODE):  # after the runtimes that linked them
                self._try(failed, item, self.bytecode.remove_unused)
        self._remove_logs(found.of(Group.LOGS), failed)
        outputs = {run_id: (app, env) for run_id, app, env, _ in self._run_keys()}
        for item in found.of(Group.RUN_OUTPUTS):
            app, environment = outputs[int(str(item.key))]
            path = self.home / "reports" / environment / app / str(item.key)
            self._try(failed, item, remove_tree, path)
        self._remove_stale_pointers(found.stale_pointers)
        return failed

    def _remove_stale_pointers(self, releases: frozenset[int]) -> None:
        """Pointers of releases that no longer run: they hold no run output any more."""
        for release_id, path in self._pointer_files():
            if release_id in releases:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("gc could not remove %s: %s", path, exc)

    def _run_keys(self) -> list[tuple[int, str, str, str]]:
        with self.services.store.transaction() as connection:
            return retention.run_facts(connection)

    def _remove_blob(self, blob: str) -> None:
        self.services.store.blobs.path_of(blob).unlink(missing_ok=True)

    def _remove_logs(self, items: list[Item], failed: list[tuple[Item, str]]) -> None:
        engine = self.services.store.engine
        for kind in ("operation", "run"):
            owners = [i.key[1] for i in items if isinstance(i.key, tuple) and i.key[0] == kind]
            retention.delete_log_lines(engine, kind, owners)
        root = self.home / "run" / "logs"
        for item in items:
            if isinstance(item.key, tuple) and item.key[0] == "release":
                self._try(failed, item, _unlink_all, root, f"{item.key[1]}.log*")

    @staticmethod
    def _try(
        failed: list[tuple[Item, str]], item: Item, action: Callable[..., None], *args: Any
    ) -> None:
        try:
            action(*args)
        except OSError as exc:
            log.warning("gc could not remove %s: %s", item.what, exc)
            failed.append((item, exc.strerror or str(exc)))


def _unlink_all(root: Path, pattern: str) -> None:
    for path in root.glob(pattern):
        path.unlink(missing_ok=True)


def _noun(group: Group, count: int) -> str:
    singular = {
        Group.RELEASES: "release",
        Group.RUNTIMES: "runtime",
        Group.BUNDLES: "bundle",
        Group.LOGS: "log",
        Group.RUN_OUTPUTS: "run output",
        Group.BYTECODE: "compiled file",
    }[group]
    return singular if count == 1 else singular + "s"


def outcome_json(outcome: Outcome) -> dict[str, object]:
    """The answer of the API: what went (or would go), grouped, with sizes in bytes."""
    failed = {id(item): why for item, why in outcome.failed}
    groups: dict[str, object] = {}
    for group in Group:
        items = outcome.plan.of(group)
        groups[str(group)] = {
            "items": [
                {
                    "what": i.what,
                    "bytes": i.size,
                    "detail": i.detail,
                    "count": i.count,
                    **({"failed": failed[id(i)]} if id(i) in failed else {}),
                }
                for i in items
            ],
            "bytes": sum(i.size for i in items if id(i) not in failed),
        }
    return {
        "dry_run": outcome.dry_run,
        "at": outcome.at,
        "kept": outcome.settings.describe(),
        "groups": groups,
        "freed_bytes": outcome.freed,
        "freed": show_bytes(outcome.freed),
        "failed": len(outcome.failed),
        "summary": outcome.summary(),
    }
