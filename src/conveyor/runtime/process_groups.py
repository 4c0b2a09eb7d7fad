"""Signalling whole process groups and waiting until they are gone, grandchildren included.

Each worker leads a session, and so a process group, of its own, and signalling the group reaches
every process in it. Only the leader is the server's child: the other members, like the
processes a killed server left behind, cannot be waited for, so a group counts as gone once
``/proc`` shows no live member of it (``group_members``), looked at again every
``_POLL_INTERVAL`` seconds. ``wait_without_reaping`` waits for a leader to exit and leaves it a
zombie, so its pid and group id cannot be reused while what is left of its group is signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conveyor.errors import RuntimeFailure
from conveyor.runtime.process_records import group_members

# How long to wait for processes that were sent SIGKILL: only a process stuck in the kernel
# (uninterruptible I/O) outlives this.
KILL_GRACE = 5.0
# How often waits for processes that are not our children (grandchildren, orphans) look again.
_POLL_INTERVAL = 0.05


def wait_without_reaping(process: subprocess.Popen[bytes]) -> None:
    """Block until the process has exited, leaving it unreaped (a zombie) so that its pid and
    process group id cannot be reused until someone waits for it."""
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        pass  # already reaped by stop()


def signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the group is already empty
    except PermissionError as exc:
        raise RuntimeFailure(f"not allowed to signal process group {pgid}: {exc}") from exc


def wait_groups_gone(pgids: list[int], deadline: float) -> list[int]:
    """Wait until the groups have no live members or the deadline passes; the groups left."""
    remaining = [pgid for pgid in pgids if group_members(pgid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(min(_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        remaining = [pgid for pgid in remaining if group_members(pgid)]
    return remaining


def terminate_groups(processes: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """SIGTERM the processes' groups, SIGKILL those left after ``timeout``; reap the leaders.
    Returns the pids of leaders whose groups still have live members after SIGKILL."""
    groups = [process.pid for process in processes]  # each leads its own group
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    _reap(processes, deadline)
    remaining = wait_groups_gone(groups, deadline)
    if not remaining:
        return []
    for pgid in remaining:
        signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_GRACE
    _reap(processes, deadline)
    return wait_groups_gone(remaining, deadline)


def _reap(processes: list[subprocess.Popen[bytes]], deadline: float) -> None:
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def describe_exit(returncode: int | None, *, short: bool = False) -> str:
    """How a process ended, for people: "exited with code 1", "was killed by SIGKILL" (or,
    ``short``, "exit code 1", "killed by SIGKILL")."""
    if returncode is None:
        return "exit code unknown" if short else "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" if short else f"was killed by {name}"
    return f"exit code {returncode}" if short else f"exited with code {returncode}"
