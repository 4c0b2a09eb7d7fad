"""Benchmark: what the sandbox costs an app, measured side by side in one run.

A small HTTP app (the standard library's threaded server, as a `command` app runs it) is
started from a real runtime (this checkout's .venv, shown read-only in the sandbox as a
release's runtime is) twice per round: unsandboxed, as the server's user, and in the sandbox
Conveyor builds (bubblewrap; as its own user when run as root). For each:
- start: from spawning the process to the first answered request;
- latency: the median and p99 of sequential requests on fresh connections (what the proxy's
  health checks do) and on one kept-alive connection (what the proxy's pool does).
Prints the medians and the ratios sandboxed / unsandboxed. Run with `make bench`.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor.runtime.sandbox import (
    Confinement,
    Isolation,
    confined,
    detect,
    interpreter_prefix,
)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "400"))

APP = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(argv: list[str], app: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    began = time.perf_counter()
    env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "HOME": "/tmp"}
    process = subprocess.Popen(argv, cwd=app, env=env, start_new_session=True)
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return process, time.perf_counter() - began
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited ({process.returncode})") from None
            time.sleep(0.005)


def latencies(port: int, keep_alive: bool) -> list[float]:
    found = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(REQUESTS):
        if not keep_alive:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        began = time.perf_counter()
        connection.request("GET", "/")
        connection.getresponse().read()
        found.append(time.perf_counter() - began)
        if not keep_alive:
            connection.close()
    connection.close()
    return found


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(argv: list[str], app: Path) -> tuple[float, list[float], list[float]]:
    port = free_port()
    process, started = start([*argv[:-1], argv[-1].replace("PORT", str(port))], app, port)
    try:
        return started, latencies(port, False), latencies(port, True)
    finally:
        stop(process)


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def main() -> None:
    sandboxing = detect()
    if sandboxing.isolation is Isolation.NONE:
        print(f"no sandbox to measure: {sandboxing.detail}")
        return
    runtime = Path(sys.prefix)
    prefix = interpreter_prefix(runtime)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as scratch:
        app = Path(scratch) / "app"
        app.mkdir()
        (app / "serve.py").write_text(APP)
        confinement = Confinement(
            read_only=(app, runtime, *((prefix,) if prefix else ())),
            uid=3_999_999 if sandboxing.own_users else None,
            gid=3_999_999 if sandboxing.own_users else None,
        )
        python = str(runtime / "bin" / "python")
        plain = [python, "serve.py", "PORT"]
        sandboxed = confined(sandboxing, confinement, plain, app)
        results: dict[str, list[tuple[float, list[float], list[float]]]] = {
            "unsandboxed": [],
            "sandboxed": [],
        }
        for number in range(ROUNDS):
            for name, argv in (("unsandboxed", plain), ("sandboxed", sandboxed)):
                results[name].append(measure(argv, app))
            print(
                f"round {number + 1}: start {results['unsandboxed'][-1][0] * 1000:.0f} ms "
                f"unsandboxed, {results['sandboxed'][-1][0] * 1000:.0f} ms sandboxed"
            )
    print()
    print(f"isolation: {sandboxing.detail}")
    print(f"{'':36}{'unsandboxed':>13}{'sandboxed':>13}{'ratio':>8}")
    rows = [
        ("start to first answer (median)", lambda r: statistics.median(x[0] for x in r)),
        (
            "request, new connection (p50)",
            lambda r: statistics.median(statistics.median(x[1]) for x in r),
        ),
        ("request, new connection (p99)", lambda r: statistics.median(p99(x[1]) for x in r)),
        (
            "request, kept alive (p50)",
            lambda r: statistics.median(statistics.median(x[2]) for x in r),
        ),
        ("request, kept alive (p99)", lambda r: statistics.median(p99(x[2]) for x in r)),
    ]
    for label, pick in rows:
        plain_value = pick(results["unsandboxed"]) * 1000
        boxed_value = pick(results["sandboxed"]) * 1000
        print(
            f"{label:36}{plain_value:>11.2f}ms{boxed_value:>11.2f}ms"
            f"{boxed_value / plain_value:>7.2f}x"
        )


if __name__ == "__main__":
    main()
