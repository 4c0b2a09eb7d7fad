"""Git-driven mode: for teams without a CI service, the server watches branches of
repositories it can reach and releases each new commit by the rules `conveyor ci` applies
(domain/branches.py): a branch mapped to an environment that takes deploys deploys there; one
mapped to Prod promotes exactly that commit's bundle from Test, or records why not.

Each repository is cloned once under HOME/git and fetched on every poll; a commit is built in a
detached work tree of that clone, so file selection and the bundle id are those of any other
checkout of the same commit."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.build import build_bundle
from conveyor.domain.apps import DEFAULT_BRANCHES
from conveyor.domain.branches import Move, plan_for_branch
from conveyor.domain.policy import bundle_alias
from conveyor.errors import ConveyorError, RuntimeFailure
from conveyor.services import pipeline
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services
from conveyor.storage import catalog, git_watches, releases
from conveyor.storage.store import now

log = logging.getLogger("conveyor.git")


@dataclass(frozen=True)
class GitSource:
    """One repository the server watches."""

    repository: str  # a path or URL the server can reach
    path: str = "."  # the app's directory inside the repository
    branches: tuple[tuple[str, str], ...] | None = None  # default: the app's ci.branches
    poll: float = 60.0
    watched: tuple[str, ...] = ("main", "test")  # branches to look at when branches is None


@dataclass(frozen=True)
class Watch:
    """What the server last did for one branch of one repository."""

    repository: str
    branch: str
    commit: str | None = None
    app: str | None = None
    environment: str | None = None
    bundle: str | None = None
    #: The app's ci.branches at that commit.
    mapping: tuple[tuple[str, str], ...] = ()
    result: str = "not looked at yet"
    at: str = ""
    #: Why the last poll of the repository failed (a bad URL, a fetch error); None once one
    #: succeeds again.
    error: str | None = None


@dataclass
class GitWatcher:
    services: Services
    sources: list[GitSource]
    home: Path
    say: Callable[[str], None] = log.info
    _watches: dict[tuple[str, str], Watch] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        if not self.sources:
            return
        self.load()
        self._thread = threading.Thread(target=self._run, name="conveyor-git", daemon=True)
        self._thread.start()

    def load(self) -> None:
        """What was last done for each watched branch, as the store remembers it (a restart
        carries on from there: no commit released twice, none missed)."""
        watched = {source.repository for source in self.sources}
        with self.services.store.transaction() as connection:
            rows = git_watches.load_watches(connection)
        with self._lock:
            for row in rows:
                if row["repository"] in watched:
                    self._watches[(row["repository"], row["branch"])] = Watch(**row)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def watches(self) -> list[Watch]:
        with self._lock:
            return sorted(self._watches.values(), key=lambda w: (w.repository, w.branch))

    def _run(self) -> None:
        """Poll each repository every its own ``poll`` seconds."""
        due = [0.0] * len(self.sources)
        while not self._stop.is_set():
            for number, source in enumerate(self.sources):
                if due[number] > time.monotonic():
                    continue
                try:
                    self.poll(source)
                except Exception as exc:  # noqa: BLE001 - one broken repository must not stop the rest
                    self._failed(source, exc)
                due[number] = time.monotonic() + source.poll
            self._stop.wait(max(0.0, min(due) - time.monotonic()))

    def _failed(self, source: GitSource, error: Exception) -> None:
        """A poll of ``source`` failed: each of its branches shows why (what was done before
        stays), in `conveyor status`."""
        text = str(error).strip() or type(error).__name__
        self.say(f"git: {source.repository}: {text}")
        for branch in self._in_pipeline_order(source):
            with self._lock:
                seen = self._watches.get((source.repository, branch))
            self._record(replace(seen or Watch(source.repository, branch), error=text), say=False)

    # --- one poll ----------------------------------------------------------------------------

    def poll(self, source: GitSource) -> None:
        """Fetch the repository and release every watched branch whose commit is new."""
        clone = self._clone(source)
        heads = _heads(clone)
        for branch in self._in_pipeline_order(source):
            commit = heads.get(branch)
            key = (source.repository, branch)
            with self._lock:
                seen = self._watches.get(key)
            if commit is None:
                if seen is None or seen.result != "no such branch" or seen.error is not None:
                    self._record(Watch(source.repository, branch, result="no such branch"))
                continue
            if seen is not None and seen.commit == commit:
                if seen.result.startswith("refused") and seen.app and seen.bundle:
                    # Upstream may have verified it since: ask again, without building again.
                    again = self._apply(
                        seen, source, seen.mapping, branch, seen.bundle, f"git:{branch}"
                    )
                    if again.result != seen.result:
                        self._record(again)
                elif seen.error is not None:
                    self._record(replace(seen, error=None), say=False)  # it polls again
                continue
            self._record(self._release(source, clone, branch, commit))

    def _in_pipeline_order(self, source: GitSource) -> list[str]:
        """The watched branches, those feeding earlier environments first (test before main),
        so a promotion sees what its upstream just verified."""
        mapping = dict(source.branches or DEFAULT_BRANCHES)
        with self.services.store.transaction() as connection:
            order = {e.name: e.position for e in catalog.list_environments(connection)}
        names = {b for b, _ in source.branches} if source.branches else set(source.watched)
        return sorted(names, key=lambda b: (order.get(mapping.get(b, ""), len(order)), b))

    def _release(self, source: GitSource, clone: Path, branch: str, commit: str) -> Watch:
        watch = Watch(source.repository, branch, commit)
        with tempfile.TemporaryDirectory(prefix="conveyor-git-", dir=self.home / "git") as scratch:
            tree = Path(scratch) / "tree"
            _git(clone, "worktree", "add", "--quiet", "--detach", "--force", str(tree), commit)
            try:
                directory = tree / source.path
                try:
                    spec = read_app_file(directory)
                    built = build_bundle(directory, Path(scratch) / "bundle.tar.gz")
                except ConveyorError as exc:
                    return replace(watch, result=f"cannot build commit {commit[:12]}: {exc}")
                watch = replace(watch, app=spec.name, bundle=built.id, mapping=spec.branches)
                provenance = {
                    **built.provenance,
                    "git": {
                        "repository": source.repository,
                        "branch": branch,
                        "commit": commit,
                        "dirty": False,
                    },
                }
                actor = f"git:{branch}"
                register_bundle(self.services, built.archive, provenance, actor)
                return self._apply(watch, source, spec.branches, branch, built.id, actor)
            finally:
                _git(clone, "worktree", "remove", "--force", str(tree))

    def _apply(
        self,
        watch: Watch,
        source: GitSource,
        app_branches: tuple[tuple[str, str], ...],
        branch: str,
        bundle: str,
        actor: str,
    ) -> Watch:
        app = watch.app
        assert app is not None
        with self.services.store.transaction() as connection:
            policies = {e.name: e.policy for e in catalog.list_environments(connection)}
        try:
            plan = plan_for_branch(
                branch, source.branches or app_branches or DEFAULT_BRANCHES, policies
            )
        except ConveyorError as exc:
            return replace(watch, result=str(exc))
        if plan.move is Move.NOTHING or plan.environment is None:
            return replace(watch, result=plan.why)
        watch = replace(watch, environment=plan.environment)
        with self.services.store.transaction() as connection:
            live = releases.live_release(connection, app, plan.environment)
        if live is not None and live.bundle_id == bundle:
            return replace(watch, result=f"bundle {bundle_alias(bundle)} is live")
        self.say(f"git: {branch} at {watch.commit and watch.commit[:12]}: {plan.why}")
        try:
            if plan.move is Move.DEPLOY:
                outcome = pipeline.deploy(self.services, app, bundle, plan.environment, actor)
            else:
                promoted = pipeline.promote(
                    self.services, app, actor, to=plan.environment, bundle_ref=bundle
                )
                if isinstance(promoted, str):
                    return replace(watch, result=promoted)
                outcome = promoted
        except ConveyorError as exc:
            return replace(watch, result=f"refused: {exc}")
        return replace(watch, result=outcome.message)

    def _record(self, watch: Watch, *, say: bool = True) -> None:
        watch = replace(watch, at=now())
        with self.services.store.transaction() as connection:
            git_watches.save_watch(connection, dataclasses.asdict(watch))
        with self._lock:
            self._watches[(watch.repository, watch.branch)] = watch
        if say:
            self.say(f"git: {watch.repository} {watch.branch}: {watch.result}")

    def _clone(self, source: GitSource) -> Path:
        key = hashlib.sha256(source.repository.encode()).hexdigest()[:16]
        clone = self.home / "git" / key
        if (clone / ".git").is_dir():
            _git(clone, "fetch", "--quiet", "--prune", "origin")
        else:
            shutil.rmtree(clone, ignore_errors=True)
            clone.parent.mkdir(parents=True, exist_ok=True)
            _git(clone.parent, "clone", "--quiet", "--no-checkout", source.repository, str(clone))
        return clone


def _heads(clone: Path) -> dict[str, str]:
    """branch -> commit of the repository's branches, as last fetched."""
    listed = _git(
        clone, "for-each-ref", "--format=%(refname:strip=3) %(objectname)", "refs/remotes/origin"
    )
    heads = {}
    for line in listed.splitlines():
        name, _, commit = line.partition(" ")
        if name and name != "HEAD":
            heads[name] = commit
    return heads


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeFailure(f"git {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        raise RuntimeFailure(f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout
