"""The process supervisor against real processes: small Python programs written to a temporary
directory, started, crashed, killed and orphaned for real.

Every process a test starts is registered with the `processes` fixture, which kills whatever is
still alive at teardown (checking the start time first, so a reused pid is never hit), whether
the test passed or not."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.errors import Conflict, RuntimeFailure
from conveyor.runtime.process_records import (
    ProcessRecord,
    ProcessRecords,
    boot_id,
    is_alive,
    process_start_time,
)
from conveyor.runtime.release_checks import http_get as health_get
from conveyor.runtime.supervisor import Supervisor, WorkerSpec

HTTP_WORKER = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"""

# Notes each start in a file, then exits with code 3.
CRASHER = """
import sys
with open(sys.argv[1], "a") as starts:
    starts.write("started\\n")
print("failing on purpose", flush=True)
sys.exit(3)
"""

# Says it is ready through a file, then sleeps (SIGTERM ends it).
SLEEPER = """
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as ready:
    ready.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""

# Starts a grandchild that ignores SIGTERM and writes its pid to argv[1]; then sleeps.
FAMILY = """
import subprocess, sys, time
GRANDCHILD = '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as pid_file:
    pid_file.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
'''
subprocess.Popen([sys.executable, "-c", GRANDCHILD, sys.argv[1]])
time.sleep(600)
"""

# Prints argv[1] numbered lines of 51 characters, a little apart, then sleeps.
TICKER = """
import sys, time
for number in range(int(sys.argv[1])):
    print(f"tick {number:05d} " + "x" * 40, flush=True)
    time.sleep(0.002)
time.sleep(600)
"""

# A server that runs a supervisor with two FAMILY workers of release 7, prints their pids and
# waits to be killed.
ORPHAN_MAKER = """
import json, sys, time
from pathlib import Path
from conveyor.runtime.supervisor import Supervisor, WorkerSpec

state_dir, program, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
supervisor = Supervisor(state_dir)
supervisor.start(7, [
    WorkerSpec([sys.executable, program, str(work / f"grandchild-{n}.pid")],
               {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, work, 0)
    for n in range(2)
])
print(json.dumps(supervisor.pids(7)), flush=True)
time.sleep(600)
"""


class Processes:
    """Everything the test started, to kill at teardown: supervisors (stopped, then their
    recorded processes killed), processes by pid and start time, and Popen objects."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.supervisors: list[Supervisor] = []
        self.pids: dict[int, int] = {}
        self.popens: list[subprocess.Popen[bytes]] = []

    def supervisor(self, name: str = "state", **options) -> Supervisor:
        supervisor = Supervisor(self.tmp_path / name, **options)
        self.supervisors.append(supervisor)
        return supervisor

    def track(self, *pids: int) -> None:
        for pid in pids:
            start_time = process_start_time(pid)
            if start_time is not None:
                self.pids.setdefault(pid, start_time)

    def popen(self, argv: list[str], **options) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, **options)
        self.popens.append(process)
        self.track(process.pid)
        return process

    def kill_all(self) -> None:
        for supervisor in self.supervisors:
            try:
                supervisor.stop_all(timeout=1)
            except RuntimeFailure:
                pass
            for _, record in ProcessRecords(supervisor.state_dir / "processes").load_all():
                if record is not None:
                    self.pids.setdefault(record.pid, record.start_time)
        for pid, start_time in self.pids.items():
            if process_start_time(pid) == start_time:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        for process in self.popens:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    registry = Processes(tmp_path)
    try:
        yield registry
    finally:
        registry.kill_all()


@pytest.fixture
def program(tmp_path: Path) -> Callable[[str], Path]:
    """program(source) -> path of a Python file holding it."""
    directory = tmp_path / "programs"
    directory.mkdir()

    def _program(source: str) -> Path:
        path = directory / f"program_{len(list(directory.iterdir()))}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return _program


def worker(
    script: Path, *args: str, port: int = 0, env: dict[str, str] | None = None
) -> WorkerSpec:
    environment = env if env is not None else {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if port:
        environment = {**environment, "PORT": str(port)}
    return WorkerSpec([sys.executable, str(script), *args], environment, script.parent, port)


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def http_get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    wait_for(path.exists, f"{path.name} to be written")
    return int(path.read_text())


def threads_of(release_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if f"-release-{release_id}-" in t.name]


def test_workers_answer_on_their_ports_and_are_recorded(processes, program, tmp_path):
    supervisor = processes.supervisor()
    ports = free_ports(2)
    script = program(HTTP_WORKER)
    supervisor.start(1, [worker(script, port=port) for port in ports])
    pids = supervisor.pids(1)
    processes.track(*pids)

    for port in ports:
        wait_for(lambda port=port: http_get(port) is not None, f"HTTP on port {port}")
    assert [int(http_get(port) or 0) for port in ports] == pids
    assert supervisor.is_running(1) and supervisor.degraded(1) is None

    for index, (pid, port) in enumerate(zip(pids, ports, strict=True)):
        path = tmp_path / "state" / "processes" / f"1-{index}.json"
        record = ProcessRecord.from_json(path.read_text())
        assert record == ProcessRecord(
            release_id=1,
            worker=index,
            pid=pid,
            pgid=pid,
            start_time=process_start_time(pid) or 0,
            boot_id=boot_id(),
            argv=(sys.executable, str(script)),
            port=port,
        )
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid

    supervisor.stop(1)
    assert not supervisor.is_running(1)
    assert not any(is_alive(pid) for pid in pids)
    assert not list((tmp_path / "state" / "processes").iterdir())


def test_a_killed_worker_is_restarted_and_answers_again(processes, program, tmp_path):
    supervisor = processes.supervisor(restart_delay=0.05)
    ports = free_ports(2)
    supervisor.start(2, [worker(program(HTTP_WORKER), port=port) for port in ports])
    first, second = supervisor.pids(2)
    processes.track(first, second)
    wait_for(lambda: http_get(ports[0]) == str(first), "the first worker to answer")
    assert supervisor.last_exit(2) is None

    os.kill(first, signal.SIGKILL)

    wait_for(lambda: http_get(ports[0]) not in (None, str(first)), "the restarted worker to answer")
    restarted = int(http_get(ports[0]) or 0)
    processes.track(restarted)
    assert supervisor.pids(2) == [restarted, second]
    record = ProcessRecord.from_json((tmp_path / "state/processes/2-0.json").read_text())
    assert (record.pid, record.start_time) == (restarted, process_start_time(restarted))
    _, log = supervisor.read_log(2)
    assert f"[conveyor] worker 0 (pid {first}) was killed by SIGKILL; restarting" in log
    assert supervisor.is_running(2) and supervisor.degraded(2) is None
    assert supervisor.last_exit(2) == "worker 0 was killed by SIGKILL"


def test_a_crash_loop_degrades_the_release_and_stops_restarting(processes, program, tmp_path):
    calls: list[tuple[int, str]] = []
    called = threading.Event()

    def on_degraded(release_id: int, reason: str) -> None:
        calls.append((release_id, reason))
        called.set()

    supervisor = processes.supervisor(on_degraded=on_degraded, max_restarts=3, restart_delay=0.02)
    starts = tmp_path / "starts.txt"
    ready = tmp_path / "ready"
    supervisor.start(
        3, [worker(program(CRASHER), str(starts)), worker(program(SLEEPER), str(ready))]
    )
    healthy = read_pid(ready)
    processes.track(healthy)

    assert called.wait(20), "on_degraded was not called"
    reason = "worker 0 exited 4 times in 60 s (last exit code 3)"
    assert calls == [(3, reason)]
    assert supervisor.degraded(3) == reason
    # The crashing worker's monitor has finished, so nothing can start it again.
    wait_for(lambda: not any(t.name.endswith("worker-0-monitor") for t in threads_of(3)), "")
    assert starts.read_text().splitlines() == ["started"] * 4
    assert supervisor.pids(3) == [healthy]
    assert supervisor.is_running(3)  # the other worker still serves
    assert not (tmp_path / "state/processes/3-0.json").exists()
    _, log = supervisor.read_log(3)
    assert log.count("failing on purpose") == 4
    assert f"[conveyor] {reason}; not restarting it" in log

    supervisor.stop(3)
    assert supervisor.degraded(3) is None and not supervisor.is_running(3)


def test_on_degraded_may_stop_the_release(processes, program, tmp_path):
    stopped = threading.Event()

    def on_degraded(release_id: int, reason: str) -> None:
        supervisor.stop(release_id)
        stopped.set()

    supervisor = processes.supervisor(on_degraded=on_degraded, max_restarts=1, restart_delay=0.02)
    supervisor.start(4, [worker(program(CRASHER), str(tmp_path / "starts.txt"))])
    assert stopped.wait(20)
    assert not supervisor.is_running(4)
    wait_for(lambda: not threads_of(4), "the release's threads to finish")


def test_stop_kills_the_group_including_a_grandchild_that_ignores_sigterm(
    processes, program, tmp_path
):
    supervisor = processes.supervisor()
    family = program(FAMILY)
    supervisor.start(5, [worker(family, str(tmp_path / f"grandchild-{n}.pid")) for n in range(2)])
    leaders = supervisor.pids(5)
    processes.track(*leaders)
    grandchildren = [read_pid(tmp_path / f"grandchild-{n}.pid") for n in range(2)]
    processes.track(*grandchildren)
    assert [os.getpgid(pid) for pid in grandchildren] == leaders

    # Several threads stop at once; each returns only when everything is gone.
    stoppers = [threading.Thread(target=supervisor.stop, args=(5, 1.0)) for _ in range(3)]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(30)

    assert not any(stopper.is_alive() for stopper in stoppers)
    assert not [pid for pid in leaders + grandchildren if is_alive(pid)]
    for pid in leaders:  # reaped: no zombie left behind
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert not threads_of(5)
    assert not supervisor.is_running(5) and supervisor.pids(5) == []
    assert not list((tmp_path / "state" / "processes").iterdir())
    supervisor.stop(5)  # idempotent


def test_the_log_rotates_and_read_log_follows_it_line_by_line(processes, program, tmp_path):
    supervisor = processes.supervisor(log_max_bytes=4000, log_backups=3)
    supervisor.start(6, [worker(program(TICKER), "600")])
    processes.track(*supervisor.pids(6))

    offset, followed = 0, ""
    deadline = time.monotonic() + 30
    while "tick 00599" not in followed and time.monotonic() < deadline:
        offset, text = supervisor.read_log(6, offset)
        followed += text
        time.sleep(0.02)

    line = re.compile(r"tick (\d{5}) x{40}")
    matches = [line.fullmatch(text) for text in followed.splitlines()]
    assert all(matches), "a line was split or merged"
    numbers = [int(match.group(1)) for match in matches if match]
    assert numbers == list(range(600))
    assert supervisor.read_log(6, offset) == (offset, "")

    log = supervisor.log_path(6)
    files = [log, *(log.with_name(f"{log.name}.{n}") for n in (1, 2, 3))]
    assert all(path.exists() for path in files)
    assert not log.with_name(f"{log.name}.4").exists()
    for path in files:
        assert path.stat().st_size <= 4000
        assert all(line.fullmatch(text) for text in path.read_text().splitlines())
    # The kept files hold the newest lines, in order, up to the last one.
    kept = [text for path in reversed(files) for text in path.read_text().splitlines()]
    assert kept == followed.splitlines()[-len(kept) :]


def test_a_worker_gets_exactly_the_given_environment(processes, program, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_TEST_SERVER_SECRET", "must not leak")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "ONLY_THIS": "yes", "PORT": "8123"}
    supervisor = processes.supervisor()
    ready = tmp_path / "ready"
    supervisor.start(8, [worker(program(SLEEPER), str(ready), env=env)])
    pid = read_pid(ready)
    processes.track(pid)

    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    assert dict(item.split("=", 1) for item in raw.split("\0") if item) == env
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2")
    assert os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")
    assert os.readlink(f"/proc/{pid}/cwd") == str(ready.parent / "programs")


def test_start_rejects_a_running_release_and_fails_clearly_for_a_bad_program(
    processes, program, tmp_path
):
    supervisor = processes.supervisor()
    ready = tmp_path / "ready"
    supervisor.start(9, [worker(program(SLEEPER), str(ready))])
    processes.track(read_pid(ready))
    with pytest.raises(Conflict, match="already running"):
        supervisor.start(9, [worker(program(SLEEPER), str(ready))])

    good = worker(program(SLEEPER), str(tmp_path / "other"))
    missing = WorkerSpec(["no-such-program-here"], {"PATH": "/usr/bin:/bin"}, tmp_path, 0)
    with pytest.raises(RuntimeFailure, match="worker 1 could not be started"):
        supervisor.start(10, [good, missing])
    assert not supervisor.is_running(10)
    assert not (tmp_path / "state/processes/10-0.json").exists()
    _, log = supervisor.read_log(10)
    assert "worker 1 could not be started" in log


def test_nothing_starts_after_stop_all(processes, program, tmp_path):
    """A wake racing the server's stop must not leave processes behind it."""
    supervisor = processes.supervisor()
    supervisor.stop_all(timeout=1)
    with pytest.raises(Conflict, match="stopping"):
        supervisor.start(11, [worker(program(SLEEPER), str(tmp_path / "late"))])
    assert not (tmp_path / "late").exists()


def test_a_new_server_reaps_the_workers_a_killed_server_left(processes, program, tmp_path):
    family = program(FAMILY)
    state_dir = tmp_path / "state"
    server = processes.popen(
        [sys.executable, "-c", ORPHAN_MAKER, str(state_dir), str(family), str(tmp_path)],
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=30), "the server did not start its workers"
    workers = json.loads(server.stdout.readline())
    processes.track(*workers)
    grandchildren = [read_pid(tmp_path / f"grandchild-{n}.pid") for n in range(2)]
    processes.track(*grandchildren)

    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    assert all(is_alive(pid) for pid in workers + grandchildren)  # own sessions: they survive

    supervisor = processes.supervisor()
    reaped = supervisor.reap_orphans(timeout=1.0)

    assert reaped == sorted(workers + grandchildren)
    assert not [pid for pid in workers + grandchildren if is_alive(pid)]
    assert not list((state_dir / "processes").iterdir())
    assert supervisor.reap_orphans() == []


def test_reaping_spares_a_reused_pid_and_drops_records_of_gone_processes(processes, tmp_path):
    supervisor = processes.supervisor()
    records = ProcessRecords(tmp_path / "state" / "processes")
    unrelated = processes.popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    gone = processes.popen([sys.executable, "-c", "pass"])
    gone_start = process_start_time(gone.pid) or 0
    gone.wait(timeout=10)

    def record(release_id: int, pid: int, start_time: int) -> ProcessRecord:
        return ProcessRecord(release_id, 0, pid, pid, start_time, boot_id(), ("x",), 0)

    # Same pid, another start time: the recorded process is gone and its pid was reused.
    records.write(record(11, unrelated.pid, (process_start_time(unrelated.pid) or 0) + 1))
    records.write(record(12, gone.pid, gone_start))
    records.path(13, 0).write_text("not a record")

    assert supervisor.reap_orphans(timeout=1.0) == []
    assert unrelated.poll() is None
    assert not list(records.directory.iterdir())


def test_start_refuses_while_an_earlier_servers_process_of_the_release_lives(
    processes, program, tmp_path
):
    supervisor = processes.supervisor()
    leftover = processes.popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    ProcessRecords(tmp_path / "state" / "processes").write(
        ProcessRecord(
            14,
            0,
            leftover.pid,
            leftover.pid,
            process_start_time(leftover.pid) or 0,
            boot_id(),
            ("x",),
            0,
        )
    )
    with pytest.raises(Conflict, match="reap_orphans"):
        supervisor.start(14, [worker(program(SLEEPER), str(tmp_path / "ready"))])

    assert supervisor.reap_orphans(timeout=5.0) == [leftover.pid]
    assert leftover.wait(timeout=10) == -signal.SIGTERM


def test_a_health_check_answered_by_something_not_http_is_no_answer():
    """What holds a worker's port may speak anything: a line that is not HTTP is "no answer"
    to the health check, never an exception in the thread watching the worker."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"SSH-2.0-not-http\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        assert health_get(f"http://127.0.0.1:{port}/", timeout=5) == (None, "")
        thread.join(5)
