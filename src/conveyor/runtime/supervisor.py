"""The process supervisor: runs the worker processes of releases, restarts those that crash, and
stops them — whole process groups, grandchildren included — without leaving anything behind.

Each worker runs in its own session (so its process group can be signalled as one, and it outlives
a killed server instead of dying with it), with stdin from /dev/null and stdout and stderr merged
into a pipe. A pump thread copies the pipe into the release's log (``conveyor.runtime.release_log``,
rotated by size), whole lines at a time. A monitor thread per worker waits for it to exit: an exit
while the release is not being stopped is a crash, answered by a restart after an exponential
backoff, or — after too many crashes within the restart window — by giving up and marking the
release degraded.

Every started worker is recorded on disk (see ``conveyor.runtime.process_records``) so that a
server started after a killed one can stop what the killed one left running (``reap_orphans``).
Supervisor messages (a crash, a restart, giving up) go into the release log as lines starting with
``[conveyor]``; the workers' own lines are written unchanged.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import Conflict, InvalidInput, RuntimeFailure
from conveyor.runtime.process_groups import (
    KILL_GRACE,
    describe_exit,
    signal_group,
    terminate_groups,
    wait_groups_gone,
    wait_without_reaping,
)
from conveyor.runtime.process_records import (
    ProcessRecord,
    ProcessRecords,
    boot_id,
    group_members,
    is_alive,
    process_start_time,
    require_proc,
    session_of,
)
from conveyor.runtime.release_log import ReleaseLog, notice_line, pump_output

_log = logging.getLogger("conveyor.supervisor")

DegradedCallback = Callable[[int, str], None]
#: Called with a release id before one of its workers is restarted; raising RuntimeFailure
#: keeps the worker stopped (the release degrades with that reason).
RestartCallback = Callable[[int], None]
#: (release id, worker index)
WorkerCallback = Callable[[int, int], None]

# How long stop() waits for the supervisor's own threads of a release once its processes are gone.
_THREAD_JOIN = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker process of a release.

    ``env`` is the complete environment of the process: nothing is inherited from the server's
    own environment. ``argv[0]`` is looked up on the ``PATH`` given in ``env``."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    #: Given the last lines the worker printed, why it exited when that was one of its
    #: resource limits (e.g. "reached its memory limit (512 MiB)"); None otherwise.
    explain_exit: Callable[[str], str | None] | None = None


@dataclass(eq=False)
class _Worker:
    index: int
    spec: WorkerSpec
    process: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=deque)
    given_up: bool = False
    #: Which resource limit the last exit reached, if any.
    limit: str | None = None
    monitor: threading.Thread | None = None
    pumps: list[threading.Thread] = field(default_factory=list)


@dataclass(eq=False)
class _Release:
    release_id: int
    workers: list[_Worker]
    log: ReleaseLog
    degraded: str | None = None
    # The latest exit nobody asked for, e.g. "worker 0 exited with code 3".
    last_exit: str | None = None
    # Set (under the supervisor's lock) when stop() begins: no process is started after it.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Set when stop() has finished, for concurrent callers of stop() to wait on.
    stopped: threading.Event = field(default_factory=threading.Event)
    # Set once the workers are gone: pumps stop waiting for pipes that escaped processes hold.
    pumps_done: threading.Event = field(default_factory=threading.Event)


class Supervisor:
    """Runs, restarts and stops the worker processes of releases; safe to use from any thread.

    ``state_dir`` holds ``logs/<release_id>.log`` (rotated at ``log_max_bytes``, keeping
    ``log_backups`` older files) and ``processes/<release_id>-<worker>.json`` (one record per
    running worker). A worker that exits while its release is not being stopped is restarted
    after ``restart_delay`` seconds, doubling with every crash within ``restart_window`` up to
    ``max_restart_delay``; when it exits more than ``max_restarts`` times within
    ``restart_window`` seconds, it is left stopped, the release is marked degraded and
    ``on_degraded(release_id, reason)`` is called (from the worker's monitor thread)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        on_degraded: DegradedCallback | None = None,
        before_restart: RestartCallback | None = None,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        log_max_bytes: int = 10 * 2**20,
        log_backups: int = 3,
        restart_delay: float = 0.5,
        max_restart_delay: float = 10.0,
    ) -> None:
        require_proc()
        if max_restarts < 0 or restart_window <= 0 or log_max_bytes <= 0 or log_backups < 0:
            raise InvalidInput(
                "supervisor limits must be positive (max_restarts and log_backups may be 0)"
            )
        if restart_delay < 0 or max_restart_delay < restart_delay:
            raise InvalidInput(
                "restart delays must satisfy 0 <= restart_delay <= max_restart_delay"
            )
        self.state_dir = state_dir
        self.on_degraded = on_degraded
        self.before_restart = before_restart
        #: ``(release_id, worker index)``: a worker crashed (called before its restart), and a
        #: worker was started again after a crash (called from its monitor thread, which
        #: watches it again once this returns). The local runtime takes the worker out of the
        #: proxy's route, and puts it back once it is healthy on a port of its own.
        self.on_worker_down: WorkerCallback | None = None
        self.on_worker_restarted: WorkerCallback | None = None
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self._logs_dir = state_dir / "logs"
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        self._records = ProcessRecords(state_dir / "processes")
        self._lock = threading.Lock()
        self._releases: dict[int, _Release] = {}
        # Kept after a release stops, so offsets stay valid for readers and a restarted
        # release appends to the same rotation sequence.
        self._logs: dict[int, ReleaseLog] = {}
        #: Set by stop_all: nothing starts any more (a wake racing the server's stop).
        self._closed = False

    # --- starting --------------------------------------------------------------------------

    def start(self, release_id: int, workers: list[WorkerSpec]) -> None:
        """Start the workers of a release, each in its own process group.

        Raises Conflict when the release is already running (or still stopping) or when a
        previous server's process of this release is still alive (call ``reap_orphans`` first),
        and RuntimeFailure when a worker cannot be started (those already started are stopped)."""
        if not workers:
            raise InvalidInput(f"release {release_id}: at least one worker is needed")
        with self._lock:
            if self._closed:
                raise Conflict("the server is stopping: no release starts any more")
            if release_id in self._releases:
                raise Conflict(f"release {release_id} is already running")
            leftovers = self._live_records(release_id)
            if leftovers:
                raise Conflict(
                    f"release {release_id} still has processes started by an earlier server "
                    f"(pids {', '.join(map(str, leftovers))}); reap them with reap_orphans() first"
                )
            release = _Release(
                release_id=release_id,
                workers=[_Worker(index, spec) for index, spec in enumerate(workers)],
                log=self._log_for(release_id),
            )
            self._releases[release_id] = release
            failure: RuntimeFailure | None = None
            try:
                for worker in release.workers:
                    self._spawn(release, worker)
            except RuntimeFailure as exc:
                failure = exc
            else:
                for worker in release.workers:
                    self._start_monitor(release, worker)
        if failure is not None:
            self.stop(release_id, timeout=KILL_GRACE)  # the workers that did start
            raise RuntimeFailure(f"release {release_id}: {failure}") from failure

    def _spawn(self, release: _Release, worker: _Worker) -> None:
        """Start (or restart) one worker and record it; the caller holds the lock."""
        spec = worker.spec
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                start_new_session=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            os.close(read_end)
            notice = f"worker {worker.index} could not be started: {exc}"
            release.log.write(notice_line(notice))
            raise RuntimeFailure(notice) from exc
        finally:
            # The child holds its own copy; the pipe reaches end-of-file once every process
            # of the worker's group has exited.
            os.close(write_end)
        start_time = process_start_time(process.pid)
        record = ProcessRecord(
            release_id=release.release_id,
            worker=worker.index,
            pid=process.pid,
            pgid=process.pid,  # a new session leader's process group id is its own pid
            # Never None for an unreaped child; -1 would only make the record match nothing.
            start_time=start_time if start_time is not None else -1,
            boot_id=boot_id(),
            argv=tuple(spec.argv),
            port=spec.port,
        )
        try:
            self._records.write(record)
        except OSError as exc:
            # A worker nobody could find after a server restart must not run at all.
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
            os.close(read_end)
            notice = f"worker {worker.index} could not be recorded: {exc}"
            release.log.write(notice_line(notice))
            raise RuntimeFailure(notice) from exc
        worker.process = process
        pump = threading.Thread(
            target=pump_output,
            args=(read_end, release.log, release.pumps_done),
            name=f"conveyor-release-{release.release_id}-worker-{worker.index}-log",
            daemon=True,
        )
        worker.pumps = [thread for thread in worker.pumps if thread.is_alive()] + [pump]
        pump.start()

    def _start_monitor(self, release: _Release, worker: _Worker) -> None:
        worker.monitor = threading.Thread(
            target=self._monitor,
            args=(release, worker),
            name=f"conveyor-release-{release.release_id}-worker-{worker.index}-monitor",
            daemon=True,
        )
        worker.monitor.start()

    # --- watching --------------------------------------------------------------------------

    def _monitor(self, release: _Release, worker: _Worker) -> None:
        """Wait for the worker to exit; restart it after a crash, or give up on it."""
        while True:
            process = worker.process
            assert process is not None
            wait_without_reaping(process)
            with self._lock:
                if release.stopping.is_set():
                    return  # stop() signals and reaps the processes itself
                # Kill what is left of the group while the unreaped leader still holds the
                # group id, so the signal cannot reach a process that reused the number.
                signal_group(process.pid, signal.SIGKILL)
                returncode = process.wait()
            now = time.monotonic()
            exit_text = describe_exit(returncode)
            worker.limit = None
            if worker.spec.explain_exit is not None:
                worker.limit = worker.spec.explain_exit(release.log.tail())
                if worker.limit is not None:
                    exit_text = f"{worker.limit} and {exit_text}"
            release.last_exit = f"worker {worker.index} {exit_text}"
            self._tell(self.on_worker_down, release, worker)
            worker.crashes.append(now)
            while worker.crashes and worker.crashes[0] < now - self.restart_window:
                worker.crashes.popleft()
            if len(worker.crashes) > self.max_restarts:
                self._give_up(release, worker, returncode)
                return
            delay = min(self.max_restart_delay, self.restart_delay * 2 ** (len(worker.crashes) - 1))
            release.log.write(
                notice_line(
                    f"worker {worker.index} (pid {process.pid}) {exit_text}; "
                    f"restarting in {delay:g} s"
                )
            )
            if release.stopping.wait(delay):
                return
            if self.before_restart is not None:
                try:
                    self.before_restart(release.release_id)
                except RuntimeFailure as exc:
                    self._give_up(release, worker, None, reason=f"{exc}")
                    return
            with self._lock:
                if release.stopping.is_set():
                    return
                try:
                    self._spawn(release, worker)
                except RuntimeFailure as exc:
                    failure: RuntimeFailure | None = exc
                else:
                    failure = None
            if failure is not None:
                self._give_up(release, worker, None, reason=f"{failure}")
                return
            self._tell(self.on_worker_restarted, release, worker)

    def _tell(self, callback: WorkerCallback | None, release: _Release, worker: _Worker) -> None:
        """Call a worker callback from the monitor thread; what it raises is logged, never the
        end of the worker's supervision."""
        if callback is None:
            return
        try:
            callback(release.release_id, worker.index)
        except Exception:
            _log.exception(
                "release %s worker %s: a callback failed", release.release_id, worker.index
            )

    def _give_up(
        self,
        release: _Release,
        worker: _Worker,
        returncode: int | None,
        *,
        reason: str | None = None,
    ) -> None:
        if reason is None:
            last = describe_exit(returncode, short=True)
            reason = (
                f"worker {worker.index} exited {len(worker.crashes)} times in "
                f"{self.restart_window:g} s (last {last}"
                + (f"; it {worker.limit}" if worker.limit else "")
                + ")"
            )
        with self._lock:
            if release.stopping.is_set():
                return
            worker.given_up = True
            first = release.degraded is None
            if first:
                release.degraded = reason
            self._records.remove(release.release_id, worker.index)
        release.log.write(notice_line(f"{reason}; not restarting it, the release is degraded"))
        if first and self.on_degraded is not None:
            self.on_degraded(release.release_id, reason)

    # --- stopping --------------------------------------------------------------------------

    def stop(self, release_id: int, timeout: float = 10.0) -> None:
        """Stop a release: SIGTERM to each worker's process group, SIGKILL to the groups still
        alive after ``timeout`` seconds. Returns once every process of the groups is gone and
        the release's threads have finished. Stopping a release that is not running does
        nothing; concurrent calls all return once it is stopped.

        Raises RuntimeFailure if a process survives SIGKILL (stuck in the kernel); its record is
        kept so that ``reap_orphans`` can try again later."""
        with self._lock:
            release = self._releases.get(release_id)
            if release is None:
                return
            already_stopping = release.stopping.is_set()
            release.stopping.set()
            # Processes the monitors reaped after a crash are excluded: their pids may be reused.
            processes = [
                worker.process
                for worker in release.workers
                if worker.process is not None and worker.process.returncode is None
            ]
        if already_stopping:
            release.stopped.wait()
            return
        survivors: list[int] = []
        try:
            survivors = terminate_groups(processes, timeout)
        finally:
            release.pumps_done.set()
            current = threading.current_thread()
            for worker in release.workers:
                # on_degraded may call stop() from a monitor thread: do not join oneself.
                for thread in [worker.monitor, *worker.pumps]:
                    if thread is not None and thread is not current:
                        thread.join(_THREAD_JOIN)
            with self._lock:
                for worker in release.workers:
                    if worker.process is None or worker.process.pid not in survivors:
                        self._records.remove(release_id, worker.index)
                del self._releases[release_id]
            release.log.close()
            release.stopped.set()
        if survivors:
            raise RuntimeFailure(
                f"release {release_id}: processes {', '.join(map(str, survivors))} did not exit "
                "after SIGKILL"
            )

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every release, all at once: this takes about ``timeout``, not that per release.
        Nothing starts afterwards."""
        with self._lock:
            self._closed = True
            release_ids = list(self._releases)
        failures: list[RuntimeFailure] = []

        def stop_one(release_id: int) -> None:
            try:
                self.stop(release_id, timeout)
            except RuntimeFailure as exc:
                failures.append(exc)

        threads = [
            threading.Thread(
                target=stop_one, args=(release_id,), name=f"conveyor-stop-{release_id}"
            )
            for release_id in release_ids
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeFailure("; ".join(str(failure) for failure in failures))

    # --- looking -------------------------------------------------------------------------

    def is_running(self, release_id: int) -> bool:
        """Whether the release is started, not being stopped, and has at least one worker that
        is running or waiting to be restarted (a degraded release may still be running)."""
        with self._lock:
            release = self._releases.get(release_id)
            return (
                release is not None
                and not release.stopping.is_set()
                and any(not worker.given_up for worker in release.workers)
            )

    def degraded(self, release_id: int) -> str | None:
        """Why the release is degraded (a worker kept crashing and is no longer restarted), or
        None when it is not, or is not running."""
        with self._lock:
            release = self._releases.get(release_id)
            return release.degraded if release is not None else None

    def last_exit(self, release_id: int) -> str | None:
        """The release's latest worker exit that no stop asked for (e.g. "worker 0 exited with
        code 3"), or None when no worker has exited by itself since the release started."""
        with self._lock:
            release = self._releases.get(release_id)
            return release.last_exit if release is not None else None

    def pids(self, release_id: int) -> list[int]:
        """The pids of the release's worker processes that are running now, in worker order
        (a worker between a crash and its restart is left out)."""
        with self._lock:
            release = self._releases.get(release_id)
            if release is None:
                return []
            return [
                worker.process.pid
                for worker in release.workers
                if worker.process is not None
                and worker.process.returncode is None
                and is_alive(worker.process.pid)
            ]

    def worker_pid(self, release_id: int, index: int) -> int | None:
        """The pid of worker ``index`` of the release while it runs; None when it does not."""
        with self._lock:
            release = self._releases.get(release_id)
            if release is None or not 0 <= index < len(release.workers):
                return None
            process = release.workers[index].process
            if process is None or process.returncode is not None or not is_alive(process.pid):
                return None
            return process.pid

    def note(self, release_id: int, message: str) -> None:
        """Write a ``[conveyor]`` line into the release's log."""
        with self._lock:
            log = self._log_for(release_id)
        log.write(notice_line(message))

    def log_path(self, release_id: int) -> Path:
        """The release's current log file (older output is in ``.1``, ``.2``, ...)."""
        return self._logs_dir / f"{release_id}.log"

    def read_log(self, release_id: int, after: int = 0) -> tuple[int, str]:
        """The release's log output after offset ``after``, and the offset to pass next time.

        Offsets count bytes written since this supervisor opened the log, across rotations:
        follow a log by passing back the returned offset. Output rotated beyond the last backup
        before it was read is skipped. An offset beyond the end (one from before a server
        restart) reads the current file from its beginning."""
        with self._lock:
            log = self._log_for(release_id)
        return log.read(after)

    def _log_for(self, release_id: int) -> ReleaseLog:
        """The release's log object; the caller holds the lock."""
        log = self._logs.get(release_id)
        if log is None:
            log = ReleaseLog(self.log_path(release_id), self.log_max_bytes, self.log_backups)
            self._logs[release_id] = log
        return log

    # --- after a killed server -----------------------------------------------------------

    def reap_orphans(self, timeout: float = 5.0) -> list[int]:
        """Stop the processes a previous, killed server left running, as found in the process
        records; meant for server start, before any release is started again.

        A recorded process group is signalled (SIGTERM, then SIGKILL after ``timeout``) only if
        the recorded pid is still the same process (same boot and start time) — or, when that
        process is gone, only the members its group still has (a group id cannot be reused
        while the group has members). Records of releases this supervisor runs are left alone;
        the others are deleted once their processes are gone. Returns the pids that were
        stopped, sorted."""
        with self._lock:
            running = set(self._releases)
            for temporary in self._records.temporary_files():
                temporary.unlink(missing_ok=True)
            candidates = [
                (path, record)
                for path, record in self._records.load_all()
                if record is None or record.release_id not in running
            ]
        this_boot = boot_id()
        targets: dict[int, list[int]] = {}  # process group -> its members when signalled
        for path, record in candidates:
            if record is None:
                path.unlink(missing_ok=True)  # unreadable: it cannot justify killing anything
                continue
            if record.boot_id != this_boot:
                continue
            if record.matches_live_process():
                targets[record.pgid] = sorted({record.pid, *group_members(record.pgid)})
            elif not is_alive(record.pid):
                remnants = [
                    pid for pid in group_members(record.pgid) if session_of(pid) == record.pgid
                ]
                if remnants:
                    targets[record.pgid] = remnants
            # Otherwise the pid now belongs to an unrelated process: leave it alone.
        for pgid in targets:
            signal_group(pgid, signal.SIGTERM)
        remaining = wait_groups_gone(list(targets), time.monotonic() + timeout)
        for pgid in remaining:
            signal_group(pgid, signal.SIGKILL)
        remaining = wait_groups_gone(remaining, time.monotonic() + KILL_GRACE)
        with self._lock:
            for path, record in candidates:
                if record is None or record.pgid in remaining:
                    continue
                if record.release_id not in self._releases:
                    path.unlink(missing_ok=True)
        return sorted(
            pid for pgid, members in targets.items() if pgid not in remaining for pid in members
        )

    def _live_records(self, release_id: int) -> list[int]:
        """Pids of live processes recorded for the release by an earlier server."""
        return [
            record.pid
            for _, record in self._records.load_all()
            if record is not None
            and record.release_id == release_id
            and record.matches_live_process()
        ]
