"""Shared by the benchmarks: free ports, child processes stopped by pid, and HTTP load with wrk
(or, where wrk is not installed, a Python aiohttp load generator in its own process).

Every server a benchmark starts binds 127.0.0.1 on a free port and is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS = BENCH / "_servers.py"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any] | None, timeout: float = 20) -> None:
    """Until something accepts connections on 127.0.0.1:port; fails early if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before listening"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    """Stop one child process by its pid: ``sig``, then SIGKILL after 5 s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.kill(process.pid, sig)
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def remove_tree(root: Path) -> None:
    """Delete a tree, read-only parts (built runtimes) included."""
    if not root.exists():
        return
    for directory, _, _ in os.walk(root):
        os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) | stat.S_IWUSR)
    shutil.rmtree(root, ignore_errors=True)


# --- load ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int  # for wrk: non-2xx-or-3xx

    @property
    def failures(self) -> int:
        return self.errors + self.non_2xx


def load_tool() -> str:
    """ "wrk" when /usr/bin/wrk (or wrk on PATH) exists, else "python" (aiohttp)."""
    if os.environ.get("BENCH_LOAD") == "python":
        return "python"
    return "wrk" if shutil.which("wrk") else "python"


def describe_tool(tool: str) -> str:
    if tool == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        first = (version.strip().splitlines() or ["wrk"])[0].split(" [")[0]
        return f"{first} (1 thread, keep-alive connections, --latency)"
    return "Python aiohttp load generator (bench/_servers.py load), in its own process"


class Load:
    """HTTP GET load on one URL with ``connections`` keep-alive connections, in a child process,
    for ``seconds`` or until ``finish()`` stops it early (SIGINT: both tools then report)."""

    def __init__(self, tool: str, url: str, connections: int, seconds: float) -> None:
        self.tool = tool
        if tool == "wrk":
            argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
            argv += ["--latency", "--timeout", "10s", url]
        else:
            argv = [PYTHON, str(SERVERS), "load", url]
            argv += ["--connections", str(connections), "--seconds", str(seconds)]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def finish(self, early: bool = False) -> LoadResult:
        try:
            if early and self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGINT)
            output, _ = self.process.communicate(timeout=600)
        finally:
            stop(self.process)
        if self.process.returncode != 0:
            raise RuntimeError(f"load generator failed ({self.process.returncode}):\n{output}")
        return parse_wrk(output) if self.tool == "wrk" else LoadResult(**json.loads(output))


def run_load(tool: str, url: str, connections: int, seconds: float) -> LoadResult:
    return Load(tool, url, connections, seconds).finish()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read the duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    def find(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match:
            return match.group(1)
        if default is None:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{output}")
        return default

    requests = int(find(r"^\s*(\d+) requests in"))
    seconds = _ms(find(r"requests in ([\d.]+\w+),")) / 1e3
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)")),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)")),
        errors=errors,
        non_2xx=int(find(r"Non-2xx or 3xx responses: (\d+)", "0")),
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def machine() -> str:
    return (
        f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {sys.version.split()[0]} ({sys.executable}), "
        f"CPU busy before start {busy_percent():.0f}%"
    )


def busy_percent(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs are (other work disturbs the numbers), from /proc/stat."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 100.0 * (1 - (idle2 - idle) / max(1, total2 - total))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (nginx's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(pid):
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # ppid
                pids.append(int(entry))
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total
