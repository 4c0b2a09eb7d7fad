"""The processes the benchmarks start, each in its own interpreter so none shares a GIL with
another:

    python bench/_servers.py upstream PORT [--work-ms N]
        a small aiohttp app on 127.0.0.1:PORT answering every GET with a short text body, but
        .../mib with 1 MiB streamed in 64 KiB writes and .../ws with a WebSocket echo
    python bench/_servers.py proxy UPSTREAM_URL [--profile FILE]
        Conveyor's Proxy with one listener (free port, printed on stdout) routing /bench/ to
        UPSTREAM_URL with the prefix stripped, until SIGTERM; --profile writes cProfile stats of
        the proxy's event loop thread
    python bench/_servers.py load URL --connections C --seconds S
        the Python load generator used when wrk is not installed; prints a JSON LoadResult;
        SIGINT stops it early
    python bench/_servers.py wsload URL --seconds S
        WebSocket echo round trips (65-byte text messages, one after another on one
        connection); prints a JSON LoadResult whose requests are round trips
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time

import aiohttp
from aiohttp import web

BODY = b"ok " + b"x" * 61 + b"\n"  # 65 bytes, a small API answer
BLOCK = b"x" * (64 * 1024)
MIB_BLOCKS = 16  # 1 MiB


def upstream(port: int, work_ms: float) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        if work_ms:
            await asyncio.sleep(work_ms / 1000)
        if request.path.endswith("/mib"):
            streamed = web.StreamResponse(
                headers={"Content-Type": "application/octet-stream"},
            )
            streamed.content_length = len(BLOCK) * MIB_BLOCKS
            try:
                await streamed.prepare(request)
                for _ in range(MIB_BLOCKS):
                    await streamed.write(BLOCK)
                await streamed.write_eof()
            except ConnectionResetError:
                pass  # the load generator stopped mid-answer at the end of its run
            return streamed
        if request.path.endswith("/ws"):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await ws.send_str(message.data)
            return ws
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def proxy(upstream_url: str, profile: str | None) -> None:
    from conveyor.runtime.proxy import Proxy

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    server = Proxy()
    server.start()
    profiler = None
    try:
        port = server.add_listener("bench", "127.0.0.1", 0)
        server.set_route("bench", "bench", 1, [upstream_url], strip_prefix=True)
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            _on_proxy_loop(server, profiler.enable)
        print(port, flush=True)
        while not stopping.wait(0.2):
            pass
    finally:
        if profiler is not None:
            _on_proxy_loop(server, profiler.disable)
            profiler.dump_stats(profile)  # type: ignore[arg-type]
        server.stop()


def _on_proxy_loop(server: object, function: object) -> None:
    """Run ``function`` on the proxy's loop thread (cProfile profiles the thread it is enabled
    on). Reaches into the proxy's private loop: for profiling only."""

    async def call() -> None:
        function()  # type: ignore[operator]

    loop = server._loop  # type: ignore[attr-defined]
    asyncio.run_coroutine_threadsafe(call(), loop).result()


async def _load(url: str, connections: int, seconds: float) -> dict[str, object]:
    from _support import percentile

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    latencies: list[float] = []
    errors = non_2xx = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            nonlocal errors, non_2xx
            while not stop.is_set() and time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if not 200 <= response.status < 400:
                            non_2xx += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies) + errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors,
        "non_2xx": non_2xx,
    }


async def _wsload(url: str, seconds: float) -> dict[str, object]:
    from _support import percentile

    latencies: list[float] = []
    errors = 0
    message = BODY.decode()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, autoping=False) as ws:
            for _ in range(200):  # warm up
                await ws.send_str(message)
                await ws.receive_str()
            began = time.monotonic()
            deadline = began + seconds
            while time.monotonic() < deadline:
                start = time.perf_counter()
                await ws.send_str(message)
                if await ws.receive_str() != message:
                    errors += 1
                latencies.append((time.perf_counter() - start) * 1000)
            elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors,
        "non_2xx": 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upstream")
    up.add_argument("port", type=int)
    up.add_argument("--work-ms", type=float, default=0.0)
    px = commands.add_parser("proxy")
    px.add_argument("upstream_url")
    px.add_argument("--profile")
    ld = commands.add_parser("load")
    ld.add_argument("url")
    ld.add_argument("--connections", type=int, default=32)
    ld.add_argument("--seconds", type=float, default=10.0)
    ws = commands.add_parser("wsload")
    ws.add_argument("url")
    ws.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.command == "wsload":
        json.dump(asyncio.run(_wsload(args.url, args.seconds)), sys.stdout)
    elif args.command == "upstream":
        upstream(args.port, args.work_ms)
    elif args.command == "proxy":
        proxy(args.upstream_url, args.profile)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop's own handler is set
        result = asyncio.run(_load(args.url, args.connections, args.seconds))
        json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
