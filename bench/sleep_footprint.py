"""Benchmark: what sleeping saves, and what a wake costs.

A real `conveyor serve` on this machine, with N small FastAPI apps (default 100) deployed to
dev and test and promoted to prod: 3 x N releases.

1. Footprint, all idle: app processes and memory (the server's RSS, the apps' PSS) with sleep
   off everywhere, then after a server restart with `sleep_after` set for dev and test (prod
   stays awake, as by default) once those have gone to sleep. Same apps, same machine, same
   run.
2. First-request latency: a sleeping FastAPI app and a sleeping Streamlit app (the examples
   forecast-api and churn-explorer) against the same apps awake, each measured ROUNDS times
   (the app put back to sleep in between). Time to the first HTTP response through the proxy,
   as an API client sees it (the request is held while the app starts).

    python bench/sleep_footprint.py [--apps N]

Everything it starts binds 127.0.0.1 on free ports and is stopped by pid.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import socket
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from conveyor.bundles.build import build_bundle
from conveyor.cli.local_server import LocalServer
from conveyor.client import Client
from conveyor.runtime.process_records import ProcessRecords, group_members

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SLEEP_AFTER = 5  # seconds, for the measurement; the default is 15 minutes

TINY = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def home() -> dict[str, str]:
    return {"status": "ok"}
"""


def environments(path: Path, ports: dict[str, int], sleep_after: str) -> Path:
    path.write_text(
        "environments:\n"
        f"  dev: {{port: {ports['dev']}, sleep_after: {sleep_after}}}\n"
        f"  test: {{port: {ports['test']}, sleep_after: {sleep_after}}}\n"
        f"  prod: {{port: {ports['prod']}}}\n"
    )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tiny_app(scratch: Path, name: str) -> Path:
    """A FastAPI app on forecast-api's lock: every app shares one runtime, as apps of a team
    with the same stack do."""
    app = scratch / "sources" / name
    shutil.copytree(
        EXAMPLES / "forecast-api", app, ignore=shutil.ignore_patterns(".conveyor", "tests")
    )
    (app / "conveyor.yml").write_text(
        f"name: {name}\ntype: fastapi\nentrypoint: app:app\nrequirements: requirements.txt\n"
    )
    (app / "app.py").write_text(TINY)
    return app


def example(scratch: Path, name: str) -> Path:
    app = scratch / "sources" / name
    shutil.copytree(EXAMPLES / name, app, ignore=shutil.ignore_patterns(".conveyor"))
    return app


def finish(client: Client, answer: dict[str, object]) -> None:
    operation = answer["operation"]
    assert isinstance(operation, dict), answer
    finished = client.follow(int(operation["id"]), lambda line: None)
    assert finished["state"] == "succeeded", finished


def pipeline(client: Client, source: Path) -> None:
    """dev and test by deploy, prod by promotion of the bundle test verified."""
    built = build_bundle(source)
    client.upload(built.archive, built.provenance)
    name = source.name
    finish(client, client.deploy(name, built.id, "dev"))
    finish(client, client.deploy(name, built.id, "test"))
    finish(client, client.promote(name, "prod"))


def footprint(home: Path, server_pid: int) -> tuple[int, float, float]:
    """(app processes, the server's RSS in MiB, the apps' PSS in MiB)."""
    pids: set[int] = set()
    for _, record in ProcessRecords(home / "run" / "processes").load_all():
        if record is not None and record.matches_live_process():
            pids.update(group_members(record.pgid) or [record.pid])
    apps = sum(_memory_kib(pid, "Pss") for pid in pids) / 1024
    return len(pids), _memory_kib(server_pid, "Rss") / 1024, apps


def _memory_kib(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def sleeping(client: Client) -> dict[tuple[str, str], bool]:
    return {(c["app"], c["environment"]): c["sleeping"] for c in client.status()["cells"]}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(1)


def first_response(url: str) -> float:
    began = time.monotonic()
    request = urllib.request.Request(url, headers={"Accept": "*/*"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        assert response.status == 200, response.status
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100, help="apps per environment")
    parser.add_argument("--parallel", type=int, default=2, help="deploys at once")
    arguments = parser.parse_args()
    cache = os.environ.get("CONVEYOR_UV_CACHE") or str(
        Path.home() / ".cache" / "conveyor-tests" / "uv"
    )
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as directory:
        scratch = Path(directory)
        ports = {name: free_port() for name in ("dev", "test", "prod")}
        env = {
            **os.environ,
            "CONVEYOR_CREDENTIALS": str(scratch / "credentials.json"),
            "CONVEYOR_UV_CACHE": cache,
        }
        os.environ["CONVEYOR_CREDENTIALS"] = env["CONVEYOR_CREDENTIALS"]
        file = environments(scratch / "environments.yml", ports, "off")
        api_port = free_port()
        server = LocalServer(scratch / "home", api_port, file, env, scratch / "server-1.log")
        try:
            server.start()
            client = Client(server.url)
            sources = [tiny_app(scratch, f"app-{n:03d}") for n in range(arguments.apps)]
            sources += [example(scratch, "forecast-api"), example(scratch, "churn-explorer")]
            began = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(arguments.parallel) as pool:
                for number, _ in enumerate(pool.map(lambda s: pipeline(client, s), sources)):
                    if (number + 1) % 20 == 0:
                        print(f"  {number + 1} apps in dev, test and prod", flush=True)
            deployed = time.monotonic() - began
            releases = 3 * len(sources)
            print(f"deployed {releases} releases in {deployed:.0f} s")
            time.sleep(10)  # settle: imports done, nothing in flight
            assert server.process is not None
            awake = footprint(scratch / "home", server.process.pid)
        finally:
            server.stop()

        file = environments(scratch / "environments.yml", ports, f"{SLEEP_AFTER}s")
        server = LocalServer(scratch / "home", api_port, file, env, scratch / "server-2.log")
        try:
            began = time.monotonic()
            server.start()
            client = Client(server.url)
            restarted = time.monotonic() - began
            print(f"server restarted with all {releases} releases in {restarted:.0f} s")
            wait_until(
                lambda: all(
                    asleep
                    for (_, environment), asleep in sleeping(client).items()
                    if environment != "prod"
                ),
                "dev and test to sleep",
            )
            time.sleep(5)
            assert server.process is not None
            slept = footprint(scratch / "home", server.process.pid)

            print()
            print(f"{len(sources)} apps x 3 environments ({releases} releases), all idle")
            print(f"{'':38}{'processes':>10}{'server RSS':>12}{'apps PSS':>12}")
            for label, (count, server_mib, apps_mib) in (
                ("sleep off (every release awake)", awake),
                (f"dev+test asleep ({SLEEP_AFTER} s idle)", slept),
            ):
                print(f"{label:38}{count:>10}{server_mib:>10.0f} MiB{apps_mib:>8.0f} MiB")
            print(
                f"asleep / awake: processes {slept[0] / awake[0]:.2f}, "
                f"app memory {slept[2] / awake[2]:.2f}"
            )

            print()
            print(f"first request, {ROUNDS} rounds (median; sleeping apps in dev, awake in prod)")
            print(f"{'':28}{'awake':>10}{'sleeping':>10}{'ratio':>8}")
            for app in ("forecast-api", "churn-explorer"):
                path = "/health" if app == "forecast-api" else "/"
                cold, warm = [], []
                for _ in range(ROUNDS):
                    wait_until(lambda app=app: sleeping(client)[(app, "dev")], f"{app} to sleep")
                    cold.append(first_response(f"http://127.0.0.1:{ports['dev']}/{app}{path}"))
                    warm.append(first_response(f"http://127.0.0.1:{ports['prod']}/{app}{path}"))
                awake_s, asleep_s = statistics.median(warm), statistics.median(cold)
                print(
                    f"{app:28}{awake_s * 1000:>8.0f}ms{asleep_s:>9.2f}s{asleep_s / awake_s:>7.0f}x"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
