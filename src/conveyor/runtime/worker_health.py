"""A release's workers from their start to healthy: the free port each is given, the wait for
its health check (and for its port to be its own), and what a failed start says to the app's
people and to its visitors."""

from __future__ import annotations

import socket
import time

from conveyor.errors import RuntimeFailure
from conveyor.runtime.port_holders import check_port_holder
from conveyor.runtime.release_checks import http_get
from conveyor.runtime.supervisor import Supervisor


def free_port() -> int:
    """A port of 127.0.0.1 that is free now; the worker binds it itself (and
    ``wait_healthy`` checks that it did)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(
    supervisor: Supervisor, release_id: int, upstreams: list[str], path: str, timeout: float
) -> float:
    """Wait until every worker at ``upstreams`` answers ``path`` with 2xx or 3xx from its own
    port; the seconds it took. RuntimeFailure, with the app's last lines, when a worker exits
    first, when another process answers on its port, or after ``timeout`` seconds."""
    began = time.monotonic()
    deadline = began + timeout
    pending = list(upstreams)
    last = "no answer yet"
    while pending:
        # A worker that exits before it is healthy fails the start at once: restarting it
        # with backoff is for releases that were serving.
        exited = supervisor.last_exit(release_id)
        if exited is not None or not supervisor.is_running(release_id):
            raise RuntimeFailure(
                f"the app exited while starting ({exited or 'not running'}):\n"
                + log_tail(supervisor, release_id)
            )
        why = _unhealthy(pending[0], path)
        if why is None:
            index = upstreams.index(pending[0])
            leader = supervisor.worker_pid(release_id, index)
            if leader is None:  # it exited meanwhile (something else answered)
                time.sleep(0.2)
                continue  # the next look says how it exited
            check_port_holder(pending[0], index, leader)
            pending.pop(0)
            continue
        last = why
        if time.monotonic() > deadline:
            raise RuntimeFailure(
                f"health check {path} did not pass within {timeout:.0f} s ({last}):\n"
                + log_tail(supervisor, release_id)
            )
        time.sleep(0.2)
    return time.monotonic() - began


def healthy_again(
    supervisor: Supervisor, release_id: int, index: int, upstream: str, path: str, timeout: float
) -> bool:
    """After a crash and restart: True once worker ``index`` answers ``path`` from a port of
    its own. False, noted in the release's log, when another process answers on its port or it
    is not healthy within ``timeout`` seconds; False too when it exits first (its monitor then
    restarts it, or gives up on it). Until True, the worker stays out of the route."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = supervisor.worker_pid(release_id, index)
        if leader is None:
            return False
        if _unhealthy(upstream, path) is None:
            try:
                check_port_holder(upstream, index, leader)
            except RuntimeFailure as refused:
                supervisor.note(release_id, f"{refused} Worker {index} stays out of the route.")
                return False
            return True
        time.sleep(0.2)
    supervisor.note(
        release_id,
        f"worker {index} did not pass its health check {path} within {timeout:.0f} s of its "
        "restart; it stays out of the route",
    )
    return False


def _unhealthy(upstream: str, path: str) -> str | None:
    """None when the worker at ``upstream`` answers ``path`` with 2xx or 3xx; else what it
    said instead ("HTTP 503", "connection refused")."""
    status, _ = http_get(upstream + path, timeout=5)
    if status is not None and 200 <= status < 400:
        return None
    return f"HTTP {status}" if status else "connection refused"


def log_tail(supervisor: Supervisor, release_id: int, lines: int = 15) -> str:
    """The release's last ``lines`` lines of output, indented, for a failure's message."""
    _, text = supervisor.read_log(release_id)
    tail = text.strip().splitlines()[-lines:]
    return "  " + "\n  ".join(tail) if tail else "  (the app printed nothing)"


def visitor_reason(failure: Exception) -> str:
    """Why a wake failed, for anyone who reaches the app: the first line of a failed start
    (how the app exited, or which health check did not pass), never its output, its files or
    the server's paths."""
    first = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
    if first.startswith(("the app exited while starting", "health check ")):
        return first.rstrip(":")
    return "its files or runtime could not be prepared"
