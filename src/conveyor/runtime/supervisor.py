"""The process supervisor: runs the worker processes of releases, restarts those that crash, and
stops them — whole process groups, grandchildren included — without leaving anything behind.

Each worker runs in its own session (so its process group can be signalled as one, and it outlives
a killed server instead of dying with it), with stdin from /dev/null and stdout and stderr merged
into a pipe. A pump thread copies the pipe into the release's log, whole lines at a time, rotating
the file by size. A monitor thread per worker waits for it to exit: an exit while the release is not
being stopped is a crash, answered by a restart after an exponential backoff, or — after too many
crashes within the restart window — by giving up and marking the release degraded.

Every started worker is recorded on disk (see ``conveyor.runtime.process_records``) so that a
server started after a killed one can stop what the killed one left running (``reap_orphans``).
Supervisor messages (a crash, a restart, giving up) go into the release log as lines starting with
``[conveyor]``; the workers' own lines are written unchanged.
"""

from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import Conflict, InvalidInput, RuntimeFailure
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

DegradedCallback = Callable[[int, str], None]
#: Called with a release id before one of its workers is restarted; raising RuntimeFailure
#: keeps the worker stopped (the release degrades with that reason).
RestartCallback = Callable[[int], None]

# How long to wait for processes that were sent SIGKILL: only a process stuck in the kernel
# (uninterruptible I/O) outlives this.
_KILL_GRACE = 5.0
# How often waits for processes that are not our children (grandchildren, orphans) look again.
_POLL_INTERVAL = 0.05
# How long a pump thread idles between looks at whether it should give up on its pipe.
_PUMP_POLL_MS = 500
# After the workers are gone, how long a pump may keep draining a pipe that some escaped
# process still holds open.
_PUMP_DRAIN = 1.0
# A line longer than this is written in pieces, so that one process cannot make the
# supervisor buffer without bound.
_MAX_LINE = 64 * 1024
_READ_SIZE = 64 * 1024
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


class _ReleaseLog:
    """One release's log file, rotated by size: ``<id>.log``, then ``<id>.log.1`` (newest) up to
    ``<id>.log.<backups>``. Written by several threads; a rotation never splits a line.

    Offsets handed to readers count every byte written through this object across rotations,
    so a reader following the log sees each line once even when the file is rotated between
    two reads (as long as it reads before the rotated bytes fall off the last backup)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._handle: io.BufferedWriter | None = None
        self._size = path.stat().st_size if path.exists() else 0
        self._start = 0  # offset of the current file's first byte
        self._kept: list[tuple[int, int]] = []  # (offset, size) of .1, .2, ... written here

    def write(self, data: bytes) -> None:
        """Append whole lines (``data`` ends with a newline)."""
        with self._lock:
            handle = self._open()
            for line in data.splitlines(keepends=True):
                if self._size > 0 and self._size + len(line) > self._max_bytes:
                    self._rotate()
                    handle = self._open()
                handle.write(line)
                self._size += len(line)
            handle.flush()

    def read(self, after: int) -> tuple[int, str]:
        """Everything written after offset ``after``, and the offset to read from next."""
        if after < 0:
            raise InvalidInput(f"a log offset cannot be negative (got {after})")
        with self._lock:
            end = self._start + self._size
            if after == end:
                return end, ""
            if after > end:
                # An offset from an earlier log (before a server restart): start afresh.
                after = self._start
            segments = [
                (self._backup(number), offset, size)
                for number, (offset, size) in reversed(list(enumerate(self._kept, start=1)))
            ]
            segments.append((self.path, self._start, self._size))
            chunks = []
            for path, offset, size in segments:
                if offset + size <= after:
                    continue
                skip = max(0, after - offset)
                try:
                    with path.open("rb") as source:
                        source.seek(skip)
                        chunks.append(source.read(size - skip))
                except FileNotFoundError:
                    continue
            return end, b"".join(chunks).decode("utf-8", errors="replace")

    def tail(self, size: int = 8192) -> str:
        """About the last ``size`` bytes written."""
        with self._lock:
            end = self._start + self._size
        return self.read(max(0, end - size))[1]

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _open(self) -> io.BufferedWriter:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
            self._size = self._handle.tell()
        return self._handle

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _rotate(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._backups > 0:
            for number in range(self._backups - 1, 0, -1):
                if self._backup(number).exists():
                    os.replace(self._backup(number), self._backup(number + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self._kept.insert(0, (self._start, self._size))
        del self._kept[self._backups :]
        self._start += self._size
        self._size = 0


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
    log: _ReleaseLog
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
        self._logs: dict[int, _ReleaseLog] = {}
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
            self.stop(release_id, timeout=_KILL_GRACE)  # the workers that did start
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
            release.log.write(_notice(notice))
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
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
            os.close(read_end)
            notice = f"worker {worker.index} could not be recorded: {exc}"
            release.log.write(_notice(notice))
            raise RuntimeFailure(notice) from exc
        worker.process = process
        pump = threading.Thread(
            target=self._pump,
            args=(read_end, release),
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
            _wait_without_reaping(process)
            with self._lock:
                if release.stopping.is_set():
                    return  # stop() signals and reaps the processes itself
                # Kill what is left of the group while the unreaped leader still holds the
                # group id, so the signal cannot reach a process that reused the number.
                _signal_group(process.pid, signal.SIGKILL)
                returncode = process.wait()
            now = time.monotonic()
            exit_text = _describe_exit(returncode)
            worker.limit = None
            if worker.spec.explain_exit is not None:
                worker.limit = worker.spec.explain_exit(release.log.tail())
                if worker.limit is not None:
                    exit_text = f"{worker.limit} and {exit_text}"
            release.last_exit = f"worker {worker.index} {exit_text}"
            worker.crashes.append(now)
            while worker.crashes and worker.crashes[0] < now - self.restart_window:
                worker.crashes.popleft()
            if len(worker.crashes) > self.max_restarts:
                self._give_up(release, worker, returncode)
                return
            delay = min(self.max_restart_delay, self.restart_delay * 2 ** (len(worker.crashes) - 1))
            release.log.write(
                _notice(
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

    def _give_up(
        self,
        release: _Release,
        worker: _Worker,
        returncode: int | None,
        *,
        reason: str | None = None,
    ) -> None:
        if reason is None:
            last = _describe_exit(returncode, short=True)
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
        release.log.write(_notice(f"{reason}; not restarting it, the release is degraded"))
        if first and self.on_degraded is not None:
            self.on_degraded(release.release_id, reason)

    def _pump(self, read_end: int, release: _Release) -> None:
        """Copy one process's output into the release log, whole lines at a time."""
        pending = b""
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        drain_until: float | None = None
        try:
            while True:
                if release.pumps_done.is_set():
                    if drain_until is None:
                        drain_until = time.monotonic() + _PUMP_DRAIN
                    elif time.monotonic() > drain_until:
                        break
                if not poller.poll(_PUMP_POLL_MS):
                    if release.pumps_done.is_set():
                        break
                    continue
                chunk = os.read(read_end, _READ_SIZE)
                if not chunk:
                    break
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if cut:
                    release.log.write(pending[:cut])
                    pending = pending[cut:]
                if len(pending) >= _MAX_LINE:
                    release.log.write(pending + b"\n")
                    pending = b""
        finally:
            if pending:
                release.log.write(pending + b"\n")
            os.close(read_end)

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
            survivors = _terminate_groups(processes, timeout)
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

    def note(self, release_id: int, message: str) -> None:
        """Write a ``[conveyor]`` line into the release's log."""
        with self._lock:
            log = self._log_for(release_id)
        log.write(_notice(message))

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

    def _log_for(self, release_id: int) -> _ReleaseLog:
        """The release's log object; the caller holds the lock."""
        log = self._logs.get(release_id)
        if log is None:
            log = _ReleaseLog(self.log_path(release_id), self.log_max_bytes, self.log_backups)
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
            _signal_group(pgid, signal.SIGTERM)
        remaining = _wait_groups_gone(list(targets), time.monotonic() + timeout)
        for pgid in remaining:
            _signal_group(pgid, signal.SIGKILL)
        remaining = _wait_groups_gone(remaining, time.monotonic() + _KILL_GRACE)
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


_NOTICE_PREFIX = "[conveyor] "


def _notice(message: str) -> bytes:
    return f"{_NOTICE_PREFIX}{message}\n".encode()


def _describe_exit(returncode: int | None, *, short: bool = False) -> str:
    if returncode is None:
        return "exit code unknown" if short else "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" if short else f"was killed by {name}"
    return f"exit code {returncode}" if short else f"exited with code {returncode}"


def _wait_without_reaping(process: subprocess.Popen[bytes]) -> None:
    """Block until the process has exited, leaving it unreaped (a zombie) so that its pid and
    process group id cannot be reused until someone waits for it."""
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        pass  # already reaped by stop()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the group is already empty
    except PermissionError as exc:
        raise RuntimeFailure(f"not allowed to signal process group {pgid}: {exc}") from exc


def _wait_groups_gone(pgids: list[int], deadline: float) -> list[int]:
    """Wait until the groups have no live members or the deadline passes; the groups left."""
    remaining = [pgid for pgid in pgids if group_members(pgid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        remaining = [pgid for pgid in remaining if group_members(pgid)]
    return remaining


def _terminate_groups(processes: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """SIGTERM the processes' groups, SIGKILL those left after ``timeout``; reap the leaders.
    Returns the pids of leaders whose groups still have live members after SIGKILL."""
    groups = [process.pid for process in processes]  # each leads its own group
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    _reap(processes, deadline)
    remaining = _wait_groups_gone(groups, deadline)
    if not remaining:
        return []
    for pgid in remaining:
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_GRACE
    _reap(processes, deadline)
    return _wait_groups_gone(remaining, deadline)


def _reap(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
