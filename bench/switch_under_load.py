"""Benchmark: blue-green switches under steady load: no request may fail, and what a switch does
to tail latency.

Sets up, in this process, the pieces Conveyor's server runs: a store in a temporary CONVEYOR
home, the proxy with one listener per environment, and the local runtime (uv cache: the test suite's
~/.cache/conveyor-tests/uv when it exists, so the runtime is not downloaded again). Deploys a
small `command` app (a threaded http.server that sleeps --work-ms per request, like the pinger of
tests/e2e/test_switch.py, but with TCP_NODELAY and a listen backlog of --backlog: see
docs/performance.md for what socketserver's defaults do) into dev, then, with --connections
keep-alive clients on http://127.0.0.1:<dev>/pinger/ (wrk in its own process, or the Python load
generator):

  steady     --seconds of load, no deploys
  switching  load while deploy() switches --switches times between two bundles, v1 and v2
             (each switch: start the new release beside the live one, health check, route swap,
             drain and stop the old one), --gap seconds apart

Prints requests/s, p50/p99 and failed requests of both phases, each switch's duration, and the
ratio of p99 during switches to steady p99. Exits non-zero when any request failed.

    .venv/bin/python bench/switch_under_load.py [--seconds 10] [--switches 10] [--backlog 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from _support import Load, LoadResult, describe_tool, load_tool, machine, run_load
from conveyor.bundles.build import build_bundle
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Environment
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.local import LocalRuntime
from conveyor.runtime.proxy import Proxy
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services
from conveyor.services.pipeline import deploy
from conveyor.storage import catalog
from conveyor.storage.store import Store

SHARED_UV_CACHE = Path.home() / ".cache" / "conveyor-tests" / "uv"

SERVER = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = {version!r}
WORK = {work_seconds!r}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
    # delayed ACK add ~40 ms to every request.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path != "/healthz" and WORK:
            time.sleep(WORK)
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5.
    request_queue_size = {backlog!r}


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_app(root: Path, version: str, work_ms: float, backlog: int) -> Path:
    app = root / f"pinger-{version}"
    app.mkdir(parents=True)
    (app / "conveyor.yml").write_text(
        "name: pinger\ntype: command\nentrypoint: python serve.py\nhealth: /healthz\n"
    )
    source = SERVER.format(version=version, work_seconds=work_ms / 1000, backlog=backlog)
    (app / "serve.py").write_text(textwrap.dedent(source))
    return app


def answer(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def row(name: str, result: LoadResult) -> str:
    return (
        f"{name:10} {result.seconds:6.1f} {result.requests:9d} {result.rps:8.0f} "
        f"{result.p50_ms:8.2f} {result.p99_ms:8.2f} {result.failures:7d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between switches")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--work-ms", type=float, default=5.0, help="the app's work per request")
    parser.add_argument(
        "--backlog", type=int, default=128, help="the app's listen backlog (socketserver: 5)"
    )
    args = parser.parse_args()
    tool = load_tool()
    cache = SHARED_UV_CACHE if SHARED_UV_CACHE.is_dir() else None

    print(f"machine: {machine()}")
    print(f"load: {describe_tool(tool)}, {args.connections} connections")
    print(
        f"app: command app (threaded http.server, TCP_NODELAY, listen backlog {args.backlog}), "
        f"{args.work_ms:g} ms per request; "
        f"{args.switches} switches, {args.gap:g} s apart"
    )
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-switch-") as tmp:
        work = Path(tmp)
        home = work / "home"
        uv_cache = cache or home / "cache" / "uv"
        os.environ.setdefault("UV_CACHE_DIR", str(uv_cache))  # for locking the bundles
        print(f"uv cache: {uv_cache}")
        store = Store.open(home)
        proxy = Proxy()
        runtime: LocalRuntime | None = None
        try:
            proxy.start()
            ports = {
                e.name: proxy.add_listener(e.name, "127.0.0.1", 0) for e in DEFAULT_ENVIRONMENTS
            }
            with store.transaction() as connection:
                catalog.save_environments(
                    connection,
                    [
                        Environment(e.name, e.position, ports[e.name], e.config_name, e.policy)
                        for e in DEFAULT_ENVIRONMENTS
                    ],
                )
            builder = RuntimeBuilder(home, cache_dir=uv_cache)
            runtime = LocalRuntime(home, proxy, builder=builder)
            services = Services(store, runtime)
            bundles = []
            for version in ("v1", "v2"):
                built = build_bundle(
                    make_app(work / "sources", version, args.work_ms, args.backlog)
                )
                bundles.append(register_bundle(services, built.archive, built.provenance, "bench"))
            versions = [b.bundle_id for b in bundles]

            began = time.monotonic()
            first = deploy(services, "pinger", versions[0], "dev", "bench")
            if not first.live:
                raise SystemExit(f"the first deploy failed: {first.message}")
            print(f"first deploy (runtime built or reused): {time.monotonic() - began:.1f} s")
            url = f"http://127.0.0.1:{ports['dev']}/pinger/"
            assert answer(url) == "v1"

            run_load(tool, url, args.connections, 2)  # warm-up: pools, threads
            steady = run_load(tool, url, args.connections, args.seconds)

            durations: list[float] = []
            wrong: list[str] = []
            load = Load(tool, url, args.connections, 600)
            try:
                time.sleep(args.gap)
                for number in range(args.switches):
                    target = (number + 1) % 2  # v2, v1, v2, ...
                    began = time.monotonic()
                    outcome = deploy(services, "pinger", versions[target], "dev", "bench")
                    durations.append(time.monotonic() - began)
                    if not outcome.live:
                        raise SystemExit(f"switch {number + 1} failed: {outcome.message}")
                    expected = f"v{target + 1}"
                    got = answer(url)
                    if got != expected:
                        wrong.append(f"after switch {number + 1}: {got!r}, not {expected!r}")
                    time.sleep(args.gap)
            finally:
                switching = load.finish(early=True)
        finally:
            if runtime is not None:
                runtime.supervisor.stop_all(timeout=5)
            proxy.stop()
            store.close()

    print()
    print(
        f"{'phase':10} {'s':>6} {'requests':>9} {'req/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'failed':>7}"
    )
    print(row("steady", steady))
    print(row("switching", switching))
    print(
        f"\nswitches: {len(durations)}, each {min(durations):.2f} s min / "
        f"{statistics.median(durations):.2f} s median / {max(durations):.2f} s max "
        "(deploy() call: start, health check, swap, drain, stop)"
    )
    print(f"ratio: p99 switching / steady = {switching.p99_ms / steady.p99_ms:.2f}x")
    print(f"ratio: p50 switching / steady = {switching.p50_ms / steady.p50_ms:.2f}x")
    print(f"ratio: req/s switching / steady = {switching.rps / steady.rps:.2f}x")
    failed = steady.failures + switching.failures
    print(f"failed requests: {failed} (steady {steady.failures}, switching {switching.failures})")
    for line in wrong:
        print(f"wrong version {line}")
    if failed or wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
