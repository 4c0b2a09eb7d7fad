"""gc over a real store (SQLite and PostgreSQL), real bundles and real files in the home, with
the in-memory runtime: what is removed and kept, bundles' rows marked removed, rollback after
gc, a bundle awaiting promotion, a running operation, old logs and run outputs, and a release
being started while gc runs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.domain.operations import OperationKind, OperationState
from conveyor.domain.retention import Group, RetentionSettings
from conveyor.errors import Conflict
from conveyor.runtime.builds import MARKER
from conveyor.runtime.memory import MemoryRuntime
from conveyor.services.pipeline import deploy, promote, rollback
from conveyor.services.retention import Retention, outcome_json
from conveyor.storage import audit, catalog, operations, releases


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"  # the store fixture's home


def gc(services, home: Path, keep: int = 2, **kwargs):
    return Retention(services, home, RetentionSettings(keep_releases=keep)).collect("ana", **kwargs)


def lock_of(services, bundle_id: str) -> str:
    with services.store.transaction() as connection:
        return str(catalog.get_bundle(connection, "hello", bundle_id)["manifest"]["lock"]["sha256"])


def fake_runtime(home: Path, name: str, lock: str) -> Path:
    path = home / "runtimes" / name
    (path / "lib").mkdir(parents=True)
    (path / "lib" / "module.pyc").write_bytes(b"x" * 1000)
    (path / MARKER).write_text(json.dumps({"lock_sha256": lock}))
    path.chmod(0o555)  # runtimes are read-only
    return path


def blob_of(services, bundle_id: str) -> Path:
    with services.store.transaction() as connection:
        blob = catalog.get_bundle(connection, "hello", bundle_id)["blob"]
    return services.store.blobs.path_of(blob)


def test_gc_removes_old_releases_files_and_keeps_what_rollback_needs(services, upload, home):
    bundles = [upload(str(n)) for n in range(1, 6)]
    outcomes = [deploy(services, "hello", b, "dev", "ana") for b in bundles]
    ids = [o.release.id for o in outcomes]
    used = fake_runtime(home, "a" * 64, lock_of(services, bundles[-1]))
    unused = fake_runtime(home, "b" * 64, "0" * 64)
    (home / "releases" / "999").mkdir(parents=True)  # left by a server killed mid-release

    dry = gc(services, home, dry_run=True)
    assert [i.key for i in dry.plan.of(Group.BUNDLES)] == bundles[:2]
    assert all(blob_of(services, b).exists() for b in bundles) and unused.exists()
    shown = outcome_json(dry)
    assert shown["dry_run"] is True and shown["freed_bytes"] == dry.freed > 0
    assert shown["groups"]["releases"]["items"][0]["what"] == f"release {ids[0]} of hello in dev"

    done = gc(services, home)
    assert not any(blob_of(services, b).exists() for b in bundles[:2])
    assert all(blob_of(services, b).exists() for b in bundles[2:])
    assert not unused.exists() and used.exists() and not (home / "releases" / "999").exists()
    assert "3 releases, 1 runtime, 2 bundles" in done.summary()  # 2 and releases/999
    with services.store.transaction() as connection:
        history = {r.id: r for r in releases.history(connection, "hello", "dev")}
        events = [e for e in audit.events(connection) if e.action == "server.gc"]
    assert history[ids[0]].files_removed_at and history[ids[2]].files_removed_at is None
    assert len(events) == 1 and events[0].details["freed_bytes"] == done.freed
    assert gc(services, home).plan.items == ()  # nothing more; no second audit event

    # A rollback to a kept release works; to a removed one it says what happened.
    assert rollback(services, "hello", "dev", "ana", to_release=ids[2]).live
    with pytest.raises(Conflict, match=f"release {ids[0]}'s files were removed by `conveyor gc`"):
        rollback(services, "hello", "dev", "ana", to_release=ids[0])
    # Uploading the bundle again brings it back.
    assert upload("1") == bundles[0]
    assert blob_of(services, bundles[0]).exists()
    assert rollback(services, "hello", "dev", "ana", to_release=ids[0]).live


def test_a_deploy_of_a_removed_bundle_fails_clearly(services, upload, home):
    first, *others = [upload(version) for version in ("1", "2", "3", "4")]
    for bundle in (first, *others):
        deploy(services, "hello", bundle, "dev", "ana")
    assert first in [i.key for i in gc(services, home, keep=1).plan.of(Group.BUNDLES)]
    outcome = deploy(services, "hello", first, "dev", "ana")
    assert not outcome.live
    assert "were removed by `conveyor gc`" in outcome.message
    assert "deploy the app again" in outcome.message


def test_bundles_awaiting_promotion_or_approval_are_kept(services, upload, home):
    from conveyor.services.pipeline import approve

    b1 = upload("1")
    deploy(services, "hello", b1, "dev", "ana")
    promote(services, "hello", "ana", to="test")
    b2, b3, b4 = upload("2"), upload("3"), upload("4")
    for bundle in (b2, b3, b4):
        deploy(services, "hello", bundle, "dev", "ana")
    approve(services, "hello", "test", b2, "bob")  # someone wants b2 in test
    # Kept in dev: b4 live (awaiting promotion to test), b3 for rollback; b2 approved for test;
    # b1 live in test (awaiting promotion to prod).
    assert gc(services, home, keep=1).plan.of(Group.BUNDLES) == []
    promote(services, "hello", "ana", to="test", bundle_ref=b2)  # the approval is spent
    promote(services, "hello", "ana", to="test", bundle_ref=b4)
    removed = gc(services, home, keep=1)
    # test: b4 live, b2 its rollback target; dev: b4 live, b3; b1 is nowhere kept now.
    assert [i.key for i in removed.plan.of(Group.BUNDLES)] == [b1]


def test_a_running_operation_holds_its_app_and_environment(services, upload, home):
    for version in ("1", "2", "3", "4"):
        deploy(services, "hello", upload(version), "dev", "ana")
    busy = operations.start_operation(
        services.store.engine, OperationKind.DEPLOY, "hello", "dev", "ana"
    )
    assert gc(services, home, keep=1, dry_run=True).plan.items == ()
    operations.finish_operation(services.store.engine, busy.id, OperationState.FAILED, "")
    assert len(gc(services, home, keep=1, dry_run=True).plan.of(Group.BUNDLES)) == 2


def test_old_logs_and_old_run_outputs_go(services, upload, home):
    first = deploy(services, "hello", upload("1"), "dev", "ana")
    logs = home / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{first.release.id}.log").write_text("old output\n")
    (logs / f"{first.release.id}.log.1").write_text("older output\n")
    runs = home / "reports" / "dev" / "hello"
    for run_id in (1, 2, 3):
        (runs / str(run_id)).mkdir(parents=True)
        (runs / str(run_id) / "index.html").write_text(f"run {run_id}")
    (runs / f".serving-{first.release.id}").write_text("1\n")
    _record_runs(services, first.release.id, 3)

    now = datetime.now(UTC)
    soon = Retention(services, home, RetentionSettings(keep_runs=1)).collect("ana", now=now)
    assert [i.key for i in soon.plan.of(Group.RUN_OUTPUTS)] == [2]  # 3 latest, 1 served
    assert soon.plan.of(Group.LOGS) == []  # nothing is 30 days old yet
    later = Retention(services, home, RetentionSettings()).collect(
        "ana", now=now + timedelta(days=31)
    )
    kinds = sorted({i.key[0] for i in later.plan.of(Group.LOGS) if isinstance(i.key, tuple)})
    assert kinds == ["operation", "run"]  # the live release's own log is still written to
    assert not (runs / "2").exists() and (runs / "1").exists() and (runs / "3").exists()
    assert operations.log_lines(services.store.engine, first.operation_id) == []
    assert operations.get_operation(services.store.engine, first.operation_id).result


def _record_runs(services, release_id: int, count: int) -> None:
    from conveyor.domain.schedules import RunState, Trigger
    from conveyor.storage import runs

    engine = services.store.engine
    for _ in range(count):
        run = runs.start_run(engine, "hello", "dev", release_id, Trigger.MANUAL, "ana")
        runs.append_log(engine, run.id, "ran")
        runs.finish_run(engine, run.id, RunState.SUCCEEDED, "")


class _GcDuringStart(MemoryRuntime):
    """Starts gc in another thread while a release is being started, and lets the start finish
    only once that gc is waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.collect = lambda: None
        self.order: list[str] = []
        self.thread: threading.Thread | None = None
        self.gc_waiting = threading.Event()
        self.armed = False

    def start(self, plan, log):
        if self.armed and self.thread is None:
            self.thread = threading.Thread(target=self.collect)
            self.thread.start()
            assert self.gc_waiting.wait(60), "gc never began"
        self.order.append("release started")
        return super().start(plan, log)


def test_gc_waits_for_a_release_being_started(store, upload, home, monkeypatch):
    from conveyor.services.context import FilesGuard, Services

    runtime = _GcDuringStart()
    services = Services(store=store, runtime=runtime)
    deploy(services, "hello", upload("1"), "dev", "ana")
    for version in ("2", "3"):
        deploy(services, "hello", upload(version), "dev", "ana")
    runtime.armed = True
    retention = Retention(services, home, RetentionSettings(keep_releases=1))
    gathered = retention.inventory

    def inventory():
        runtime.order.append("gc planned")
        return gathered()

    monkeypatch.setattr(retention, "inventory", inventory)
    original = FilesGuard.collecting

    def collecting(guard):
        runtime.gc_waiting.set()
        return original(guard)

    monkeypatch.setattr(services.files, "collecting", lambda: collecting(services.files))
    results = []
    runtime.collect = lambda: results.append(retention.collect("ana"))
    newest = upload("4")
    outcome = deploy(services, "hello", newest, "dev", "ana")
    assert runtime.thread is not None
    runtime.thread.join(60)
    assert outcome.live and runtime.order[-2:] == ["release started", "gc planned"]
    kept = results[0].plan.kept_bundles
    assert newest in kept and blob_of(services, newest).exists()


def test_the_daily_pass_logs_one_line_and_acts_as_the_server(services, upload, home):
    from conveyor.services.daily_gc import DailyGc

    for version in ("1", "2", "3", "4"):
        deploy(services, "hello", upload(version), "dev", "ana")
    said: list[str] = []
    daily = DailyGc(Retention(services, home, RetentionSettings(keep_releases=1)), say=said.append)
    line = daily.run_once()
    assert said == [line] and line.startswith("daily gc removed 2 releases, 2 bundles;")
    with services.store.transaction() as connection:
        [event] = [e for e in audit.events(connection) if e.action == "server.gc"]
    assert event.actor == "server"
    assert daily.run_once() == "daily gc: nothing to remove"
