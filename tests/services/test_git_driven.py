"""Git-driven mode with real git repositories and a real store (SQLite and PostgreSQL), the
in-memory runtime: what was done for each branch survives a restart (no commit released
twice), each repository is polled at its own `poll:`, and a poll that fails is shown per
branch until one succeeds."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from conveyor.bundles.build import build_bundle
from conveyor.services.git_driven import GitSource, GitWatcher
from conveyor.storage import releases


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def remote_with_app(root: Path) -> Path:
    """A bare repository holding a small app on `main` and `test` (its lock committed)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "ana@example.com")
    git(work, "config", "user.name", "Ana")
    (work / "conveyor.yml").write_text("name: hello\ntype: fastapi\n")
    (work / "app.py").write_text("app = None\n")
    (work / ".gitignore").write_text(".conveyor/\n")
    build_bundle(work, root / "first.tar.gz")  # writes conveyor.lock, committed with the rest
    git(work, "add", "-A")
    git(work, "commit", "-qm", "hello")
    git(work, "branch", "test")
    remote = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(work), str(remote))
    return remote


def history(services, environment: str) -> list[int]:
    with services.store.transaction() as connection:
        return [r.id for r in releases.history(connection, "hello", environment)]


def test_a_restarted_watcher_carries_on_without_releasing_again(services, tmp_path):
    remote = remote_with_app(tmp_path / "repo")
    source = GitSource(str(remote), poll=60)
    first = GitWatcher(services, [source], tmp_path / "home")
    first.poll(source)
    deployed = history(services, "test")
    assert len(deployed) == 1
    [test_watch] = [w for w in first.watches() if w.branch == "test"]
    assert test_watch.commit and test_watch.environment == "test"

    # A new server process: it knows what was done from the store, not from memory.
    second = GitWatcher(services, [source], tmp_path / "home")
    second.load()
    assert [(w.branch, w.commit, w.result) for w in second.watches()] == [
        (w.branch, w.commit, w.result) for w in first.watches()
    ]
    second.poll(source)
    assert history(services, "test") == deployed  # not released again


def test_each_repository_is_polled_at_its_own_pace_and_failures_show_per_branch(services, tmp_path):
    remote = remote_with_app(tmp_path / "repo")
    quick = GitSource(str(remote), poll=0.2)
    broken = GitSource(str(tmp_path / "no-such-repository.git"), poll=3600)
    watcher = GitWatcher(services, [quick, broken], tmp_path / "home", say=lambda line: None)
    polled: dict[str, int] = {quick.repository: 0, broken.repository: 0}
    enough = threading.Event()
    real_poll = watcher.poll

    def counting(source: GitSource) -> None:
        polled[source.repository] += 1
        if polled[quick.repository] >= 4:
            enough.set()
        real_poll(source)

    watcher.poll = counting  # type: ignore[method-assign]
    watcher.start()
    try:
        assert enough.wait(120), polled
    finally:
        watcher.stop()
    assert polled[broken.repository] == 1  # its hour has not come again

    failed = [w for w in watcher.watches() if w.repository == broken.repository]
    assert {w.branch for w in failed} == {"main", "test"}
    assert all(w.error and "git clone failed" in w.error for w in failed), failed
    assert all(w.error is None for w in watcher.watches() if w.repository == quick.repository)
    # Remembered too: a restart shows the failure until a poll succeeds.
    again = GitWatcher(services, [quick, broken], tmp_path / "home")
    again.load()
    assert {w.branch for w in again.watches() if w.error} == {"main", "test"}
