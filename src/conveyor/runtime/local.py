"""The local runtime: releases as supervised processes on this machine, behind Conveyor's proxy.

start: extract the verified bundle, ensure its runtime (built once per lock), render if the type
is rendered, start the workers on free ports with only the variables the app is given, and wait
for the health check. check: health, smoke expectations and the bundle's tests against the
release's own address. route: one atomic swap in the proxy. stop: drain, then stop the workers.

Every process of a release (its workers, a render or build step, its tests) runs in the
release's sandbox (runtime/sandbox.py, runtime/release_sandbox.py) where the machine has
bubblewrap: its files and runtime read-only, its output location writable, nothing else of the
server. Before a worker is
restarted, the release's files are checked against its bundle and restored when they changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sysconfig
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.archive import extract
from conveyor.domain.apps import AppSpec
from conveyor.domain.environments import Environment
from conveyor.domain.releases import CheckKind, CheckResult
from conveyor.domain.sleep import describe_seconds, effective_sleep_after
from conveyor.errors import ConveyorError, NotFound, RuntimeFailure
from conveyor.runtime.adapters import Launch, LaunchContext, adapter_for
from conveyor.runtime.adapters.base import serving_pointer
from conveyor.runtime.app_data import release_environment
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.drift import repair, runtime_drift
from conveyor.runtime.interface import Instance, Log, ReleasePlan, RuntimeState
from conveyor.runtime.proxy import Proxy
from conveyor.runtime.release_checks import smoke, tests
from conveyor.runtime.release_files import changes, restore
from conveyor.runtime.release_sandbox import confine_build, release_confinement, step_confine
from conveyor.runtime.sandbox import (
    Confinement,
    Isolation,
    Sandboxing,
    confined,
    describe_confinement,
    detect,
    limit_reached,
    readable_by_the_app,
)
from conveyor.runtime.supervisor import Supervisor, WorkerSpec
from conveyor.runtime.worker_health import (
    free_port,
    healthy_again,
    visitor_reason,
    wait_healthy,
)
from conveyor.storage.atomic_files import write_atomically

#: Called with a release id and what changed when its files were restored from its bundle.
Repaired = Callable[[int, str], None]


@dataclass(frozen=True)
class _Started:
    instance: Instance
    spec: AppSpec
    launch: Launch
    upstreams: list[str]
    env: dict[str, str]
    runtime: str  # what it runs on, for diffs
    runtime_id: str
    runtime_path: Path
    lock: tuple[str, Path, str]  # python requirement, lock file, lock format
    plan: ReleasePlan
    app_dir: Path
    confinement: Confinement
    isolation: str  # for people
    contexts: tuple[LaunchContext, ...]  # one per worker; the first is what a run starts from
    uid: int | None
    #: Idle seconds after which the routed release sleeps (None: never).
    sleep_after: int | None

    @property
    def context(self) -> LaunchContext:
        return self.contexts[0]


class LocalRuntime:
    """Runs releases as local processes; implements conveyor.runtime.interface.Runtime."""

    def __init__(
        self,
        home: Path,
        proxy: Proxy,
        *,
        builder: RuntimeBuilder | None = None,
        supervisor: Supervisor | None = None,
        health_timeout: float = 90.0,
        tests_timeout: float = 600.0,
        drain_timeout: float = 30.0,
        websocket_grace: float = 5.0,
        sandboxing: Sandboxing | None = None,
        on_repaired: Repaired | None = None,
    ) -> None:
        self.home = home
        self.proxy = proxy
        self.builder = builder or RuntimeBuilder(home)
        self.supervisor = supervisor or Supervisor(home / "run")
        self.supervisor.before_restart = self._verify_files
        self.supervisor.on_worker_down = self._worker_down
        self.supervisor.on_worker_restarted = self._worker_restarted
        self.sandboxing = sandboxing or detect(home / "syscall-filter.bpf")
        self.builder.confine = lambda argv, runtime: confine_build(self.sandboxing, argv, runtime)
        self.on_repaired = on_repaired
        self._repairs: dict[int, str] = {}
        self.health_timeout = health_timeout
        self.tests_timeout = tests_timeout
        self.drain_timeout = drain_timeout
        self.websocket_grace = websocket_grace
        self._started: dict[int, _Started] = {}
        self._routed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        #: Per release: its workers out of the route (crashed, not yet back healthy).
        self._down: dict[int, set[int]] = {}
        #: Releases routed asleep: their processes stopped until a request wakes them.
        self._asleep: set[int] = set()
        #: Per release: sleeping, waking and stopping one at a time.
        self._release_locks: dict[int, threading.Lock] = {}
        proxy.waker = self.wake

    # --- Runtime interface ---------------------------------------------------------------

    def start(self, plan: ReleasePlan, log: Log, *, lazily: bool = False) -> Instance:
        sandboxed = self.sandboxing.isolation is Isolation.BUBBLEWRAP
        if plan.environment.isolation == "required" and not sandboxed:
            raise RuntimeFailure(
                f"{plan.environment.name} requires isolation, and this server cannot sandbox "
                f"apps: {self.sandboxing.detail}"
            )
        release_dir = self.home / "releases" / str(plan.release_id)
        if release_dir.exists():
            shutil.rmtree(release_dir)  # a restart after a crash: extract afresh
        app_dir = release_dir / "app"
        extract(plan.archive, app_dir, expected_id=plan.bundle_id)
        readable_by_the_app(app_dir)
        spec = read_app_file(app_dir)
        lock = plan.manifest.get("lock")
        if not lock:
            raise RuntimeFailure(
                f"bundle {plan.bundle_id[:10]} has no lock; rebuild it with this Conveyor"
            )
        runtime = self.builder.ensure(
            str(plan.manifest["python"]), app_dir / lock["path"], lock["format"], log
        )
        log(
            ("reusing" if runtime.reused else "built") + f" runtime {runtime.id[:12]} "
            f"(Python {runtime.python_version})"
        )
        adapter = adapter_for(str(plan.manifest["type"]))
        env = release_environment(
            plan, runtime.path / "bin", release_dir, self.home, self.sandboxing.isolation
        )
        uid = plan.uid if self.sandboxing.own_users else None
        rendered = release_dir / "output"
        runs_dir = (
            self.runs_dir(plan.environment.name, plan.app) if adapter.kind == "rendered" else None
        )
        serving = release_confinement(
            plan, app_dir, runtime.path, rendered, uid, spec, runs_dir, self.home
        )
        isolation = describe_confinement(self.sandboxing, serving)
        log(f"isolation: {isolation}")
        if not sandboxed:
            log(f"warning: {self.sandboxing.detail}")
        confine = step_confine(self.sandboxing, serving, rendered, uid, app_dir)
        contexts = [
            LaunchContext(
                app=plan.app,
                entrypoint=str(plan.manifest["entrypoint"]),
                app_dir=app_dir,
                runtime_bin=runtime.path / "bin",
                port=free_port(),
                health=spec.health,
                output_dir=rendered,
                build=spec.build,
                confine=confine,
                timeout=spec.timeout,
                runs_dir=runs_dir,
                pointer=serving_pointer(runs_dir, plan.release_id) if runs_dir else None,
            )
            for _ in range(spec.workers)
        ]
        rendered.mkdir(parents=True, exist_ok=True)
        if adapter.at_release:
            log(f"rendering {plan.manifest['entrypoint']}")
            adapter.render(contexts[0], env, log)
        readable_by_the_app(rendered)
        sleep_after = effective_sleep_after(
            plan.environment.name, plan.environment.sleep_after, spec.sleep_after
        )
        asleep = lazily and sleep_after is not None
        if asleep:
            # Ready to run, nothing running: the first request starts it (see wake).
            launches = [adapter.launch(context) for context in contexts]
            upstreams = [f"http://127.0.0.1:{context.port}" for context in contexts]
            log("asleep until its first request (it sleeps when idle here)")
            self.supervisor.note(plan.release_id, "started asleep; the first request wakes it")
        else:
            launches, upstreams, seconds = self._start_workers(
                plan.release_id, contexts, env, serving, spec
            )
            log(
                f"healthy after {seconds:.1f} s: {len(contexts)} worker(s) at "
                f"{', '.join(upstreams)}"
            )
        instance = Instance(plan.release_id, plan.app, plan.environment.name, upstreams[0])
        with self._lock:
            self._started[plan.release_id] = _Started(
                instance,
                spec,
                launches[0],
                upstreams,
                env,
                f"runtime {runtime.id[:12]}, Python {runtime.python_version} on "
                f"{sysconfig.get_platform()}",
                runtime.id,
                runtime.path,
                (str(plan.manifest["python"]), app_dir / lock["path"], lock["format"]),
                plan,
                app_dir,
                serving,
                isolation,
                tuple(contexts),
                uid,
                sleep_after,
            )
            if asleep:
                self._asleep.add(plan.release_id)
        return instance

    def _start_workers(
        self,
        release_id: int,
        contexts: Sequence[LaunchContext],
        env: dict[str, str],
        serving: Confinement,
        spec: AppSpec,
    ) -> tuple[list[Launch], list[str], float]:
        """Start the release's workers and wait until each is healthy: their launches, base
        URLs, and the seconds it took. RuntimeFailure (workers stopped) when one is not."""
        adapter = adapter_for(spec.type)
        launches = [adapter.launch(context) for context in contexts]
        workers = [
            WorkerSpec(
                argv=confined(self.sandboxing, serving, launch.argv, context.app_dir),
                env={**env, **launch.env, "PORT": str(context.port)},
                cwd=context.app_dir,
                port=context.port,
                explain_exit=lambda tail: limit_reached(spec.resources, tail),
            )
            for context, launch in zip(contexts, launches, strict=True)
        ]
        self.supervisor.start(release_id, workers)
        upstreams = [f"http://127.0.0.1:{context.port}" for context in contexts]
        try:
            seconds = wait_healthy(
                self.supervisor, release_id, upstreams, launches[0].health_path, self.health_timeout
            )
        except RuntimeFailure:
            self.supervisor.stop(release_id)
            raise
        return launches, upstreams, seconds

    # --- sleep and wake ------------------------------------------------------------------

    def _worker_down(self, release_id: int, index: int) -> None:
        """A worker crashed: out of the route until its restart is healthy on its own port
        (remembered too for a release not routed yet: ``route`` applies it)."""
        with self._lock:
            self._down.setdefault(release_id, set()).add(index)
        with contextlib.suppress(ConveyorError):  # the proxy stopped: nothing routes there
            self.proxy.set_worker_down(release_id, index, True)

    def _worker_restarted(self, release_id: int, index: int) -> None:
        """Back in the route once healthy on a port of its own; otherwise stopped, so that its
        supervisor counts a crash and restarts it (with backoff) until it gives up and the
        release shows degraded, rather than running out of the route unseen."""
        started = self._started.get(release_id)
        if started is None or index >= len(started.upstreams):
            return
        upstream, path = started.upstreams[index], started.launch.health_path
        if healthy_again(self.supervisor, release_id, index, upstream, path, self.health_timeout):
            with self._lock:
                self._down.get(release_id, set()).discard(index)
            with contextlib.suppress(ConveyorError):
                self.proxy.set_worker_down(release_id, index, False)
            return
        leader = self.supervisor.worker_pid(release_id, index)
        if leader is not None:  # unreaped until its monitor, this thread, waits for it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader, signal.SIGKILL)

    def environments_changed(self, environments: Sequence[Environment]) -> None:
        """A new ``sleep_after`` of an environment applies to its running releases from now:
        each one's idle time is counted against it from the next look. A release asleep
        stays asleep until its next request (then it keeps the new setting)."""
        settings = {e.name: e.sleep_after for e in environments}
        with self._lock:
            for release_id, started in list(self._started.items()):
                name = started.instance.environment
                if name not in settings:
                    continue
                now = effective_sleep_after(name, settings[name], started.spec.sleep_after)
                if now == started.sleep_after:
                    continue
                self._started[release_id] = replace(started, sleep_after=now)
                said = f"after {describe_seconds(now)} without requests" if now else "never"
                self.supervisor.note(release_id, f"{name}'s settings changed: it sleeps {said}")

    def sleep_idle(self) -> list[int]:
        """Put to sleep every routed release idle for longer than its ``sleep_after``: its
        processes stop, its route stays (the next request wakes it). Returns those put to
        sleep."""
        with self._lock:
            routed = list(self._routed.items())
        slept = []
        for (environment, app), release_id in routed:
            started = self._started.get(release_id)
            if started is None or started.sleep_after is None or release_id in self._asleep:
                continue
            with self._release_lock(release_id):
                if release_id in self._asleep or release_id not in self._started:
                    continue
                if self._routed.get((environment, app)) != release_id:
                    continue
                if not self.proxy.sleep_if_idle(environment, app, release_id, started.sleep_after):
                    continue
                try:
                    self.supervisor.stop(release_id)
                finally:
                    # Marked asleep in the proxy: the next request must start it again.
                    self._asleep.add(release_id)
                self.supervisor.note(
                    release_id,
                    f"asleep after {describe_seconds(started.sleep_after)} without requests; "
                    "the next request wakes it",
                )
                slept.append(release_id)
        return slept

    def sleep_check_interval(self) -> float:
        """How often idle releases should be looked for: a quarter of the shortest
        ``sleep_after`` of the routed releases, between 1 and 30 seconds."""
        with self._lock:
            shortest = min(
                (
                    s.sleep_after
                    for s in self._started.values()
                    if s.sleep_after is not None
                    and self._routed.get((s.instance.environment, s.instance.app))
                    == s.instance.release_id
                ),
                default=120,
            )
        return float(min(30, max(1, shortest // 4)))

    def wake(self, release_id: int) -> list[str]:
        """Start a sleeping release's workers again from its runtime and files (checked
        against its bundle first): no build, no checks, the same release. Returns its
        workers' new base URLs; RuntimeFailure when it cannot start."""
        with self._release_lock(release_id):
            started = self._started.get(release_id)
            if started is None:
                raise RuntimeFailure(f"release {release_id} is no longer deployed here")
            if release_id not in self._asleep:
                return list(started.upstreams)
            if self._routed.get((started.instance.environment, started.instance.app)) != release_id:
                raise RuntimeFailure("a newer release of the app took its place")
            contexts = tuple(replace(c, port=free_port()) for c in started.contexts)
            try:
                self._verify_files(release_id)
                _, upstreams, seconds = self._start_workers(
                    release_id, contexts, started.env, started.confinement, started.spec
                )
            except (RuntimeFailure, OSError) as exc:
                # The whole story for the app's people; one line for its visitors.
                self.supervisor.note(release_id, f"could not wake: {exc}")
                raise RuntimeFailure(visitor_reason(exc)) from exc
            with self._lock:
                # What changed meanwhile (a new sleep_after) stays: only the workers are new.
                current = self._started.get(release_id, started)
                self._started[release_id] = replace(current, contexts=contexts, upstreams=upstreams)
                self._asleep.discard(release_id)
                self._down.pop(release_id, None)  # new workers, on new ports
            self.supervisor.note(release_id, f"woke on a request, healthy after {seconds:.1f} s")
            return upstreams

    def asleep(self, release_id: int) -> bool:
        return release_id in self._asleep

    def _release_lock(self, release_id: int) -> threading.Lock:
        with self._lock:
            return self._release_locks.setdefault(release_id, threading.Lock())

    def run(self, release_id: int, run_id: int, log: Log) -> None:
        """Run a started report or job again: its output goes to a new directory of the runs
        directory, served at `/<app>/` from the next request when the run succeeds (the
        previous output stays served when it fails). RuntimeFailure says why it failed."""
        started = self._started.get(release_id)
        if started is None or started.context.runs_dir is None:
            raise RuntimeFailure(f"release {release_id} is not a running report or job here")
        self._verify_files(release_id)
        output = started.context.runs_dir / str(run_id)
        output.mkdir()
        confine = step_confine(
            self.sandboxing, started.confinement, output, started.uid, started.app_dir
        )
        context = replace(started.context, output_dir=output, confine=confine)
        adapter = adapter_for(started.spec.type)
        adapter.render(context, {**started.env, "CONVEYOR_RUN": str(run_id)}, log)
        readable_by_the_app(output)
        assert context.pointer is not None
        write_atomically(context.pointer, f"{run_id}\n".encode(), mode=0o644)

    def run_output(self, environment: str, app: str, run_id: int) -> Path | None:
        page = self.home / "reports" / environment / app / str(run_id) / "index.html"
        return page if page.exists() or page.is_symlink() else None

    def runs_dir(self, environment: str, app: str) -> Path:
        """Where the outputs of an app's runs in an environment are kept, one directory each."""
        directory = self.home / "reports" / environment / app
        directory.mkdir(parents=True, exist_ok=True)
        readable_by_the_app(directory)
        return directory

    def check(self, instance: Instance, plan: ReleasePlan, log: Log) -> list[CheckResult]:
        started = self._started[instance.release_id]
        results = [CheckResult(CheckKind.HEALTH, True, "healthy before checks")]
        base = self.app_url(instance.release_id)
        if started.spec.checks.smoke:
            results.append(smoke(started.spec.checks.smoke, base, log))
        if started.spec.checks.tests:
            results.append(
                tests(
                    started.spec.checks.tests,
                    base,
                    started.app_dir,
                    started.env,
                    self.tests_timeout,
                    lambda argv: confined(
                        self.sandboxing, started.confinement, argv, started.app_dir
                    ),
                    log,
                )
            )
        return results

    def route(self, instance: Instance) -> None:
        started = self._started[instance.release_id]
        self.proxy.set_route(
            instance.environment,
            instance.app,
            instance.release_id,
            started.upstreams,
            strip_prefix=started.launch.strip_prefix,
            asleep=instance.release_id in self._asleep,
        )
        with self._lock:
            self._routed[(instance.environment, instance.app)] = instance.release_id
            down = set(self._down.get(instance.release_id, ()))
        for index in down:  # crashed before it was routed, and not back yet
            self.proxy.set_worker_down(instance.release_id, index, True)

    def stop(self, release_id: int, log: Log) -> None:
        started = self._started.get(release_id)
        if started is not None:
            key = (started.instance.environment, started.instance.app)
            if self._routed.get(key) != release_id:
                # No longer routed: let its requests finish, then close its WebSockets (1012).
                self.proxy.drain(
                    key[0],
                    key[1],
                    release_id,
                    timeout=self.drain_timeout,
                    websocket_grace=self.websocket_grace,
                )
        with self._release_lock(release_id):
            self.supervisor.stop(release_id)
            with self._lock:
                self._started.pop(release_id, None)
                self._asleep.discard(release_id)
                self._down.pop(release_id, None)
                self._release_locks.pop(release_id, None)
        shutil.rmtree(self.home / "releases" / str(release_id), ignore_errors=True)
        log(f"stopped release {release_id}")

    # --- helpers -------------------------------------------------------------------------

    def app_url(self, release_id: int) -> str:
        """The release's own address, as its tests and smoke checks see the app: requests to
        `<app_url>/health` reach the app's `/health`."""
        started = self._started[release_id]
        prefix = "" if started.launch.strip_prefix else f"/{started.instance.app}"
        return started.upstreams[0] + prefix

    def read_log(self, release_id: int, after: int = 0) -> tuple[int, str]:
        return self.supervisor.read_log(release_id, after)

    def drift(self, release_ids: Sequence[int]) -> list[RuntimeState]:
        by_runtime: dict[str, list[_Started]] = {}
        for release_id in release_ids:
            started = self._started.get(release_id)
            if started is not None:
                by_runtime.setdefault(started.runtime_id, []).append(started)
        states = []
        for runtime_id, users in sorted(by_runtime.items()):
            _, lock_file, lock_format = users[0].lock
            found = runtime_drift(users[0].runtime_path, lock_file, lock_format)
            problems = [line.strip() for line in found.summary().splitlines()[1:]]
            states.append(
                RuntimeState(
                    runtime_id,
                    tuple(u.instance.release_id for u in users),
                    () if found.clean else tuple(p for p in problems if not p.startswith("note:")),
                    found.summary(),
                )
            )
        return states

    def rebuild(self, runtime_id: str, log: Log) -> None:
        user = next((s for s in self._started.values() if s.runtime_id == runtime_id), None)
        if user is None:
            raise NotFound(f"no running release uses runtime {runtime_id[:12]}")
        python, lock_file, lock_format = user.lock
        repaired = repair(self.builder, python, lock_file, lock_format, log)
        if repaired.rebuilt:
            # The path now names the clean runtime; running processes keep their open files.
            self.builder.remove_retired(runtime_id)

    def runtime_of(self, release_id: int) -> str | None:
        started = self._started.get(release_id)
        return started.runtime if started else None

    def degraded(self, release_id: int) -> str | None:
        return self.supervisor.degraded(release_id)

    def isolation(self, release_id: int | None = None) -> str:
        started = self._started.get(release_id) if release_id is not None else None
        if started is not None:
            return started.isolation
        return self.sandboxing.detail

    def repaired(self, release_id: int) -> str | None:
        return self._repairs.get(release_id)

    def _verify_files(self, release_id: int) -> None:
        """Before a worker restarts: the release's files must be its bundle's. Changed ones
        are restored (and reported); RuntimeFailure when they cannot be."""
        started = self._started.get(release_id)
        if started is None:
            return
        found = changes(started.app_dir, started.plan.manifest)
        if not found:
            return
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        try:
            restore(started.app_dir, started.plan.archive, started.plan.bundle_id)
        except (OSError, ConveyorError) as exc:
            raise RuntimeFailure(
                f"the release's files no longer match its bundle ({shown}) and could not be "
                f"restored: {exc}"
            ) from exc
        readable_by_the_app(started.app_dir)
        note = (
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: files restored from bundle "
            f"{started.plan.bundle_id[:10]} before a restart ({shown})"
        )
        self._repairs[release_id] = note
        self.supervisor.note(release_id, note)
        if self.on_repaired is not None:
            self.on_repaired(release_id, shown)
