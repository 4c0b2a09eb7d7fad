"""gc over a real store (SQLite and PostgreSQL), real bundles and real files in the home, with
the in-memory runtime: what is removed and kept, bundles' rows marked removed, rollback after
gc, a bundle awaiting promotion, a running operation, old logs and run outputs, and a release
being started while gc runs."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.domain.operations import OperationKind, OperationState
from conveyor.domain.retention import Group, RetentionSettings
from conveyor.errors import Conflict
from conveyor.runtime.builds import MARKER
from conveyor.runtime.bytecode import BytecodeStore
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


# --- what the hostile review found ---------------------------------------------------------


def test_a_bundle_whose_only_release_failed_survives_gc_and_deploys_once_fixed(
    services, runtime, upload, home
):
    deploy(services, "hello", upload("1"), "dev", "ana")
    fresh = upload("2")
    runtime.failing_starts.add(fresh)  # say, a variable it needs is missing
    assert not deploy(services, "hello", fresh, "dev", "ana").live
    outcome = gc(services, home, keep=1)
    assert fresh not in [i.key for i in outcome.plan.of(Group.BUNDLES)]
    assert fresh in outcome.plan.kept_bundles and blob_of(services, fresh).exists()
    runtime.failing_starts.discard(fresh)  # the developer sets the variable
    assert deploy(services, "hello", fresh, "dev", "ana").live


def test_redeploying_the_live_bundle_keeps_the_earlier_bundle_for_rollback(services, upload, home):
    first = upload("1")
    deploy(services, "hello", first, "dev", "ana")
    second = upload("2")
    for _ in range(7):  # a variable changed, a repair: the same bundle released again
        deploy(services, "hello", second, "dev", "ana")
    outcome = gc(services, home, keep=5)
    assert outcome.plan.of(Group.BUNDLES) == [] and first in outcome.plan.kept_bundles
    back = rollback(services, "hello", "dev", "ana")
    assert back.live and back.release.bundle_id == first


def test_a_rollback_whose_previous_bundle_was_removed_says_so(services, upload, home):
    from conveyor.storage import retention as retention_records

    bundles = [upload(version) for version in ("1", "2", "3")]
    for bundle in bundles:
        deploy(services, "hello", bundle, "dev", "ana")
    # The previous bundle's files were removed (by a gc keeping fewer), an older one's not.
    with services.store.transaction() as connection:
        retention_records.mark_removed(connection, [bundles[1]])
    blob_of(services, bundles[1]).unlink()
    with pytest.raises(Conflict, match="removed by `conveyor gc`.*Deploy the app again"):
        rollback(services, "hello", "dev", "ana")
    with services.store.transaction() as connection:
        live = releases.live_release(connection, "hello", "dev")
    assert live is not None and live.bundle_id == bundles[2]  # not silently bundle 1


def _recompressed(services, bundle_id: str, directory: Path) -> Path:
    """The same bundle (same id) in an archive with other bytes: compressed differently."""
    import gzip

    data = gzip.decompress(blob_of(services, bundle_id).read_bytes())
    archive = directory / "again.tar.gz"
    archive.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    assert archive.read_bytes() != blob_of(services, bundle_id).read_bytes()
    return archive


def test_uploading_a_removed_bundle_again_in_other_bytes_restores_it(
    services, upload, home, tmp_path
):
    from conveyor.services.bundles import register_bundle

    bundles = [upload(version) for version in ("1", "2", "3", "4")]
    for bundle in bundles:
        deploy(services, "hello", bundle, "dev", "ana")
    again = _recompressed(services, bundles[0], tmp_path)
    assert bundles[0] in [i.key for i in gc(services, home, keep=1).plan.of(Group.BUNDLES)]
    registered = register_bundle(services, again, {}, "ana")
    assert registered.bundle_id == bundles[0] and not registered.new
    assert blob_of(services, bundles[0]).read_bytes() == again.read_bytes()
    with services.store.transaction() as connection:
        row = catalog.get_bundle(connection, "hello", bundles[0])
    assert row["removed_at"] is None and row["size"] == again.stat().st_size
    assert deploy(services, "hello", bundles[0], "dev", "ana").live
    # An intact bundle uploaded again in other bytes keeps its blob: nothing new is stored.
    before = sorted(p for p in (home / "blobs").rglob("*") if p.is_file())
    register_bundle(services, _recompressed(services, bundles[3], tmp_path), {}, "ana")
    assert sorted(p for p in (home / "blobs").rglob("*") if p.is_file()) == before


def test_an_upload_during_gc_waits_and_brings_the_bundle_back(services, upload, home, monkeypatch):
    bundles = [upload(version) for version in ("1", "2", "3", "4")]
    for bundle in bundles:
        deploy(services, "hello", bundle, "dev", "ana")
    retention = Retention(services, home, RetentionSettings(keep_releases=1))
    guard = services.files
    original_starting = guard.starting
    upload_waits = threading.Event()  # the upload reached the files guard (or finished)

    def starting(*args, **kwargs):
        upload_waits.set()
        return original_starting(*args, **kwargs)

    monkeypatch.setattr(guard, "starting", starting)
    uploaded: list[str] = []

    def upload_again() -> None:
        try:
            uploaded.append(upload("1"))
        finally:
            upload_waits.set()

    remove_blob = retention._remove_blob
    thread = threading.Thread(target=upload_again)

    def remove_blob_meanwhile(blob: str) -> None:
        # gc has marked the bundles removed and committed; now someone uploads bundle 1.
        if not thread.is_alive() and not uploaded:
            thread.start()
            assert upload_waits.wait(60), "the upload never began"
        remove_blob(blob)

    monkeypatch.setattr(retention, "_remove_blob", remove_blob_meanwhile)
    removed = retention.collect("ana")
    assert bundles[0] in [i.key for i in removed.plan.of(Group.BUNDLES)]
    thread.join(60)
    assert uploaded == [bundles[0]]
    with services.store.transaction() as connection:
        row = catalog.get_bundle(connection, "hello", bundles[0])
    assert row["removed_at"] is None and blob_of(services, bundles[0]).exists()
    assert deploy(services, "hello", bundles[0], "dev", "ana").live


def test_a_dry_run_holds_no_release_off(services, upload, home, monkeypatch):
    for version in ("1", "2", "3"):
        deploy(services, "hello", upload(version), "dev", "ana")

    def collecting():
        raise AssertionError("a dry run took the files guard")

    monkeypatch.setattr(services.files, "collecting", collecting)
    with services.files.starting():  # a release is being started meanwhile
        dry = gc(services, home, keep=1, dry_run=True)
    assert len(dry.plan.of(Group.BUNDLES)) == 1


def test_a_release_held_off_by_gc_says_so_in_its_log(services, upload, home, monkeypatch):
    from conveyor.storage import operations as operation_records

    for version in ("1", "2", "3"):
        deploy(services, "hello", upload(version), "dev", "ana")
    newest = upload("4")
    said = threading.Event()
    append_log = operation_records.append_log

    def logged(engine, operation_id, line):
        if "waiting for gc to finish" in line:
            said.set()
        return append_log(engine, operation_id, line)

    monkeypatch.setattr(operation_records, "append_log", logged)
    retention = Retention(services, home, RetentionSettings(keep_releases=1))
    gathered = retention.inventory
    outcomes: list = []
    thread = threading.Thread(
        target=lambda: outcomes.append(deploy(services, "hello", newest, "dev", "ana"))
    )

    def inventory():
        thread.start()  # a deploy while gc holds releases off
        assert said.wait(60), "the release never said it waits for gc"
        return gathered()

    monkeypatch.setattr(retention, "inventory", inventory)
    retention.collect("ana")
    thread.join(60)
    [outcome] = outcomes
    assert outcome.live
    lines = [
        line for _, _, line in operations.log_lines(services.store.engine, outcome.operation_id)
    ]
    assert any(line.endswith("waiting for gc to finish") for line in lines)


def test_stale_serving_pointers_go_and_hold_no_run_output(services, upload, home):
    old = deploy(services, "hello", upload("1"), "dev", "ana")
    live = deploy(services, "hello", upload("2"), "dev", "ana")
    runs = home / "reports" / "dev" / "hello"
    for run_id in (1, 2, 3):
        (runs / str(run_id)).mkdir(parents=True)
        (runs / str(run_id) / "index.html").write_text(f"run {run_id}")
    (runs / f".serving-{old.release.id}").write_text("1\n")  # release 1 no longer runs
    (runs / f".serving-{live.release.id}").write_text("2\n")
    _record_runs(services, live.release.id, 3)
    done = Retention(services, home, RetentionSettings(keep_runs=1)).collect("ana")
    assert [i.key for i in done.plan.of(Group.RUN_OUTPUTS)] == [1]  # 3 latest, 2 served
    assert done.plan.stale_pointers == {old.release.id}
    assert not (runs / f".serving-{old.release.id}").exists()
    assert (runs / f".serving-{live.release.id}").read_text() == "2\n"
    assert not (runs / "1").exists() and (runs / "2").exists() and (runs / "3").exists()


def test_a_log_file_that_rotates_away_while_gc_looks_is_skipped(
    services, upload, home, monkeypatch
):
    first = deploy(services, "hello", upload("1"), "dev", "ana")
    logs = home / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{first.release.id}.log").write_text("output\n")
    (logs / f"{first.release.id}.log.1").write_text("older output\n")
    lstat = Path.lstat

    def rotating(path: Path):
        if path.name.endswith(".log.1"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return lstat(path)

    monkeypatch.setattr(Path, "lstat", rotating)
    found = Retention(services, home, RetentionSettings()).inventory()
    [release_log] = [log for log in found.logs if log.kind == "release"]
    assert release_log.size == len("output\n")


def test_a_gc_whose_every_removal_failed_says_so_plainly():
    from conveyor.domain.retention import Item, Plan
    from conveyor.services.retention import Outcome

    items = tuple(Item(Group.RUNTIMES, f"runtime {n}", 10, f"r{n}") for n in range(2))
    found = Plan(items, frozenset(), frozenset())
    outcome = Outcome(
        found, False, RetentionSettings(), tuple((i, "Permission denied") for i in items)
    )
    assert outcome.summary() == (
        "gc removed nothing: 2 items could not be removed (the server's log says why)"
    )
    one = Outcome(found, False, RetentionSettings(), ((items[0], "Permission denied"),))
    assert one.summary() == "gc removed 1 runtime; 10 B freed; 1 could not be removed"


def test_the_daily_gc_runs_on_its_own_thread_until_stopped(services, upload, home, monkeypatch):
    from conveyor.services.daily_gc import DailyGc

    for version in ("1", "2", "3", "4"):
        deploy(services, "hello", upload(version), "dev", "ana")
    retention = Retention(services, home, RetentionSettings(keep_releases=1))
    collect = retention.collect
    calls = iter(range(1000))

    def hiccup(actor, **kwargs):
        if next(calls) == 0:
            raise RuntimeError("the database went away for a moment")
        return collect(actor, **kwargs)

    monkeypatch.setattr(retention, "collect", hiccup)
    said: list[str] = []
    two_passes = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if len(said) >= 2:
            two_passes.set()

    daily = DailyGc(retention, interval=0.01, first=0.01, say=say)
    daily.start()
    try:
        assert two_passes.wait(60), "the daily gc did not run again after a failed pass"
    finally:
        daily.stop(timeout=60)
    assert not daily.running
    assert said[0].startswith("daily gc removed 2 releases, 2 bundles;")
    assert said[1] == "daily gc: nothing to remove"


def _store_entry(store: Path, name: str, size: int) -> Path:
    entry = store / "cpython-311" / "803" / name[:2] / f"{name}.pyc"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(b"c" * size)
    return entry


def _link_into(runtime: Path, entry: Path) -> None:
    cache = runtime / "lib" / "__pycache__"
    runtime.chmod(0o755)
    (runtime / "lib").chmod(0o755)
    cache.mkdir(exist_ok=True)
    os.link(entry, cache / f"{entry.stem}.cpython-311.pyc")
    runtime.chmod(0o555)


def test_gc_trims_the_shared_bytecode_no_runtime_will_link(services, upload, home, tmp_path):
    """Compiled files shared between runtimes (runtime/bytecode.py) go with the last runtime
    that links them, and leftovers no runtime links go too; a file a kept runtime links stays,
    so its next build links it instead of compiling again."""
    bundles = [upload(str(n)) for n in range(1, 4)]
    for bundle in bundles:
        deploy(services, "hello", bundle, "dev", "ana")
    kept = fake_runtime(home, "a" * 64, lock_of(services, bundles[-1]))
    going = fake_runtime(home, "b" * 64, "0" * 64)
    store = BytecodeStore(tmp_path / "uv-bytecode")
    shared = _store_entry(store.root, "aa01", 300)  # in both runtimes
    only_going = _store_entry(store.root, "bb02", 500)  # in the runtime gc removes
    leftover = _store_entry(store.root, "cc03", 700)  # in none (a runtime removed by hand)
    for runtime in (kept, going):
        _link_into(runtime, shared)
    _link_into(going, only_going)
    retention = Retention(services, home, RetentionSettings(keep_releases=1), bytecode=store)

    dry = retention.collect("ana", dry_run=True)
    [item] = dry.plan.of(Group.BYTECODE)
    assert (item.count, item.size, item.detail) == (2, 1200, str(store.root))
    assert "2 compiled files" in dry.summary() and only_going.exists() and leftover.exists()
    shown = outcome_json(dry)["groups"]["bytecode"]  # type: ignore[index]
    assert shown["items"][0]["count"] == 2 and shown["bytes"] == 1200

    done = retention.collect("ana")
    assert "1 runtime" in done.summary() and "2 compiled files" in done.summary()
    assert not going.exists() and not only_going.exists() and not leftover.exists()
    assert kept.exists() and shared.exists() and shared.stat().st_nlink == 2
    assert retention.collect("ana", dry_run=True).plan.of(Group.BYTECODE) == []
