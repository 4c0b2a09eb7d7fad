"""Benchmark: promoting a verified bundle test -> prod against the same app's cold start.

A real `conveyor serve` process in a fresh home (the shared uv cache is reused, so no
download is measured). For the forecast-api example:
- cold start: the first deploy to test, which builds the runtime from the lock, starts the
  app and runs its checks (health, smoke, tests);
- promotion: the same bundle to prod: no build, the runtime is reused; start, checks, switch.
Each is timed from the request to the operation's end, as the CLI sees it, over several fresh
homes; the medians and their ratio are printed. Run with `make bench`.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from conveyor.bundles.build import build_bundle
from conveyor.cli.local_server import LocalServer, environments_file
from conveyor.client import Client

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed_operation(client: Client, answer: dict[str, object]) -> float:
    began = time.monotonic()
    operation = answer["operation"]
    assert isinstance(operation, dict), answer
    finished = client.follow(int(operation["id"]), lambda line: None)
    assert finished["state"] == "succeeded", finished
    return time.monotonic() - began


def one_round(scratch: Path, cache: str) -> tuple[float, float]:
    ports = {name: free_port() for name in ("dev", "test", "prod")}
    env = {
        **os.environ,
        "CONVEYOR_CREDENTIALS": str(scratch / "credentials.json"),
        "CONVEYOR_UV_CACHE": cache,
    }
    environments = environments_file(scratch / "environments.yml", ports)
    server = LocalServer(scratch / "home", free_port(), environments, env, scratch / "server.log")
    try:
        server.start()
        os.environ["CONVEYOR_CREDENTIALS"] = env["CONVEYOR_CREDENTIALS"]
        client = Client(server.url)
        source = scratch / "forecast-api"
        shutil.copytree(
            ROOT / "examples" / "forecast-api",
            source,
            ignore=shutil.ignore_patterns(".conveyor", "__pycache__"),
        )
        built = build_bundle(source)
        client.upload(built.archive, built.provenance)
        cold = timed_operation(client, client.deploy("forecast-api", built.id, "test"))
        promotion = timed_operation(client, client.promote("forecast-api", "prod"))
        return cold, promotion
    finally:
        server.stop()


def main() -> None:
    cache = os.environ.get("CONVEYOR_UV_CACHE") or str(
        Path.home() / ".cache" / "conveyor-tests" / "uv"
    )
    colds, promotions = [], []
    for number in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as scratch:
            cold, promotion = one_round(Path(scratch), cache)
        colds.append(cold)
        promotions.append(promotion)
        print(f"round {number + 1}: cold start {cold:.2f} s, promotion {promotion:.2f} s")
    cold, promotion = statistics.median(colds), statistics.median(promotions)
    print()
    print("forecast-api (fastapi, 24 locked packages, health + smoke + tests checks)")
    print(f"{'':34}{'median':>10}")
    print(f"{'cold start (build runtime, start)':34}{cold:>9.2f}s")
    print(f"{'promotion test -> prod (reuse)':34}{promotion:>9.2f}s")
    print(f"promotion / cold start: {promotion / cold:.2f}  ({cold / promotion:.1f}x faster)")


if __name__ == "__main__":
    main()
