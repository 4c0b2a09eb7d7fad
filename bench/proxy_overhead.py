"""Benchmark: what Conveyor's proxy costs a request, against the app reached directly and behind
nginx.

One small aiohttp app (bench/_servers.py upstream, 65-byte text answers) runs in its own process
on a free 127.0.0.1 port. The same load (wrk, or a Python aiohttp generator where wrk is
missing) is sent, one target after another in this run, to:

  direct  the app itself
  conveyor  Conveyor's Proxy in its own process (one listener, /bench/ routed to the app with
          the prefix stripped, as a `command` app is), so it shares no GIL with the load
  nginx   nginx as reverse proxy with a keep-alive upstream pool and one worker process (when
          nginx is installed), configured to do what Conveyor's proxy does per request:
          strip the prefix and set X-Forwarded-*

at two concurrencies: 1 connection (the latency one request pays) and 32 (throughput when
saturated); then a 1 MiB response streamed by the app in 64 KiB writes (``1MiB`` rows, 4
connections: MiB/s = req/s) and WebSocket echo round trips of 65-byte messages on one
connection (``ws-echo`` rows: round trips/s and their latency). Prints requests/s, p50/p99
latency, CPU time per request of the proxy process, and the ratios; the machine's load average
is printed first, since other work on a shared machine moves every number. On a 2-core
machine the load generator, the proxy and the app share the two cores:
numbers are comparable with each other, not with a dedicated load-testing setup.

    .venv/bin/python bench/proxy_overhead.py [--seconds 8] [--connections 1,32] [--profile]
        [--mib-connections 4] [--no-extra]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _support import (
    PYTHON,
    SERVERS,
    Load,
    LoadResult,
    cpu_seconds,
    describe_tool,
    free_port,
    load_tool,
    machine,
    run_load,
    stop,
    wait_for_port,
)

NGINX_CONF = """\
worker_processes {workers};
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /bench/ {{
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 300s;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Prefix /bench;
        }}
    }}
}}
"""


@dataclass
class Target:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None  # whose CPU time is the proxy's (None: direct)


@dataclass
class Row:
    target: str
    connections: int
    result: LoadResult
    proxy_cpu_us: float | None  # CPU time of the proxy per request
    app_cpu_us: float
    kind: str = ""  # "": 65-byte answers; "1MiB": streamed 1 MiB; "ws-echo": round trips


def start_upstream(work_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [PYTHON, str(SERVERS), "upstream", str(port), "--work-ms", str(work_ms)]
    process = subprocess.Popen(argv)
    wait_for_port(port, process)
    return process, port


def start_conveyor_proxy(
    upstream_port: int, profile: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    argv = [PYTHON, str(SERVERS), "proxy", f"http://127.0.0.1:{upstream_port}"]
    if profile is not None:
        argv += ["--profile", str(profile)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        stop(process)
        raise RuntimeError("Conveyor's proxy did not start (see its output above)")
    port = int(line)
    wait_for_port(port, process)
    return process, port


def start_nginx(
    upstream_port: int, tmp: Path, workers: int
) -> tuple[subprocess.Popen[bytes], int, str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            workers=workers,
            # As root nginx's workers would run as nobody; the temp paths here are root's.
            user="user root;" if os.geteuid() == 0 else "",
            tmp=tmp,
            upstream=upstream_port,
            port=port,
        )
    )
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    process = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"])
    wait_for_port(port, process)
    return process, port, version


def ws_load(url: str, seconds: float) -> LoadResult:
    """WebSocket echo round trips on one connection (bench/_servers.py wsload)."""
    ws_url = "ws" + url.removeprefix("http") + "ws"
    argv = [PYTHON, str(SERVERS), "wsload", ws_url, "--seconds", str(seconds)]
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return LoadResult(**json.loads(output.stdout))


def measure(
    tool: str,
    target: Target,
    upstream: subprocess.Popen[bytes],
    connections: int,
    seconds: float,
    warmup: float,
    kind: str = "",
) -> Row:
    url = target.url + ("mib" if kind == "1MiB" else "")
    if warmup and kind != "ws-echo":
        run_load(tool, url, connections, warmup)
    proxy_before = cpu_seconds(target.process.pid) if target.process else 0.0
    app_before = cpu_seconds(upstream.pid)
    if kind == "ws-echo":
        result = ws_load(target.url, seconds)
    else:
        result = run_load(tool, url, connections, seconds)
    requests = max(1, result.requests)
    proxy_cpu = (
        (cpu_seconds(target.process.pid) - proxy_before) / requests * 1e6
        if target.process
        else None
    )
    app_cpu = (cpu_seconds(upstream.pid) - app_before) / requests * 1e6
    return Row(target.name, connections, result, proxy_cpu, app_cpu, kind)


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'target':9} {'kind':>7} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'failed':>6} {'proxy CPU us/req':>16} {'app CPU us/req':>14}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        r = row.result
        proxy_cpu = "-" if row.proxy_cpu_us is None else f"{row.proxy_cpu_us:.0f}"
        print(
            f"{row.target:9} {row.kind or '65B':>7} {row.connections:5d} {r.rps:9.0f} "
            f"{r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{r.failures:6d} {proxy_cpu:>16} {row.app_cpu_us:14.0f}"
        )


def print_ratios(rows: list[Row]) -> None:
    by = {(row.target, row.kind, row.connections): row.result for row in rows}
    pairs = [("conveyor", "direct"), ("nginx", "direct"), ("conveyor", "nginx")]
    for kind, connections in dict.fromkeys((row.kind, row.connections) for row in rows):
        for a, b in pairs:
            x, y = by.get((a, kind, connections)), by.get((b, kind, connections))
            if x is None or y is None:
                continue
            print(
                f"ratio {a}/{b} {kind or '65B':>7} at {connections:>2} conn: "
                f"req/s {x.rps / y.rps:5.2f}x   p50 {x.p50_ms / y.p50_ms:5.2f}x   "
                f"p99 {x.p99_ms / y.p99_ms:5.2f}x   "
                f"added p50 {x.p50_ms - y.p50_ms:+.2f} ms"
            )


def profile_proxy(tool: str, upstream_port: int, connections: int, seconds: float) -> None:
    """A cProfile of the proxy's event loop thread under load (slower than unprofiled)."""
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        stats_file = Path(tmp) / "proxy.prof"
        process, port = start_conveyor_proxy(upstream_port, stats_file)
        try:
            load = Load(tool, f"http://127.0.0.1:{port}/bench/", connections, seconds)
            result = load.finish()
        finally:
            stop(process, signal.SIGTERM)
        print(
            f"\ncProfile of the proxy's loop thread, {result.requests} requests at "
            f"{connections} connections (profiling slows it: {result.rps:.0f} req/s):"
        )
        stats = pstats.Stats(str(stats_file))
        stats.sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", default="1,32", help="comma-separated levels")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--work-ms", type=float, default=0.0, help="app's sleep per request")
    parser.add_argument(
        "--profile", action="store_true", help="also profile the proxy with cProfile"
    )
    parser.add_argument("--mib-connections", type=int, default=4)
    parser.add_argument(
        "--no-extra", action="store_true", help="skip the 1 MiB and WebSocket echo rows"
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.connections.split(",")]
    tool = load_tool()

    print(f"machine: {machine()}")
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    print(f"load: {describe_tool(tool)}; {args.seconds:g} s per run after {args.warmup:g} s warmup")
    processes: list[subprocess.Popen[bytes]] = []
    nginx: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-nginx-") as tmp:
        try:
            upstream, upstream_port = start_upstream(args.work_ms)
            processes.append(upstream)
            targets = [Target("direct", f"http://127.0.0.1:{upstream_port}/bench/", None)]
            proxy, proxy_port = start_conveyor_proxy(upstream_port)
            processes.append(proxy)
            targets.append(Target("conveyor", f"http://127.0.0.1:{proxy_port}/bench/", proxy))
            if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
                nginx, nginx_port, version = start_nginx(
                    upstream_port, Path(tmp), args.nginx_workers
                )
                processes.append(nginx)
                targets.append(Target("nginx", f"http://127.0.0.1:{nginx_port}/bench/", nginx))
                print(f"nginx: {version}, {args.nginx_workers} worker process(es), keepalive 64")
            else:
                print("nginx: not installed; skipped")
            print(
                "app: aiohttp, 65-byte text body"
                + (f", {args.work_ms:g} ms sleep per request" if args.work_ms else "")
            )
            print()
            began = time.monotonic()
            rows = [
                measure(tool, target, upstream, connections, args.seconds, args.warmup)
                for connections in levels
                for target in targets
            ]
            if not args.no_extra:
                rows += [
                    measure(
                        tool,
                        target,
                        upstream,
                        args.mib_connections,
                        args.seconds,
                        args.warmup,
                        "1MiB",
                    )
                    for target in targets
                ]
                rows += [
                    measure(tool, target, upstream, 1, args.seconds, 0, "ws-echo")
                    for target in targets
                ]
            print_table(rows)
            print()
            print_ratios(rows)
            print(f"\n(measured in {time.monotonic() - began:.0f} s)")
            if args.profile:
                profile_proxy(tool, upstream_port, max(levels), args.seconds)
            failed = sum(row.result.failures for row in rows)
            if failed:
                raise SystemExit(f"{failed} requests failed")
        finally:
            for process in reversed(processes):
                # nginx's graceful stop is SIGQUIT; the others stop on SIGTERM.
                stop(process, signal.SIGQUIT if process is nginx else signal.SIGTERM)


if __name__ == "__main__":
    main()
