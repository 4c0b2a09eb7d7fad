"""The proxy with real servers and real traffic: upstream aiohttp apps (and a few raw-socket
servers where exact bytes matter) on free ports, the proxy on its own loop thread, clients over
real sockets. Proxy calls block, so async scenarios make them from a worker thread."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import gzip
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from conveyor.errors import Conflict, InvalidInput
from conveyor.runtime.proxy import Proxy
from conveyor.runtime.proxy_forward import wire_close_code
from conveyor.runtime.proxy_pages import prefers_json

in_thread = asyncio.to_thread


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    proxy = Proxy()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def base(proxy: Proxy) -> str:
    """The address of the dev environment's listener."""
    return f"http://127.0.0.1:{proxy.add_listener('dev')}"


# --- upstream servers -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def echo_app(name: str, closes: list[int | None] | None = None) -> web.Application:
    """Answers every path with what it received, as JSON; WebSockets echo with its name."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse(protocols=("v1.conveyor",))
            await ws.prepare(request)
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str(f"{name}:{message.data}")
                elif message.type is WSMsgType.BINARY:
                    await ws.send_bytes(name.encode() + b":" + message.data)
            if closes is not None:
                closes.append(ws.close_code)
            return ws
        body = await request.read()
        return web.json_response(
            {
                "upstream": name,
                "method": request.method,
                "path": request.raw_path,
                "headers": list(request.headers.items()),
                "body": len(body),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def raw_upstream(
    respond: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A server that answers each connection with ``respond``, byte for byte."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await respond(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def request_heads(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Each request head a raw upstream receives on one connection, until the proxy closes it."""
    while True:
        try:
            yield await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return


async def raw_exchange(url: str, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send raw request bytes (asking to close the connection); status, headers, body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in lines)
    ]
    return int(status_line.split()[1]), headers, body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def resident_memory() -> int:
    """This process's resident set size in bytes, now (not the peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def get_json(client: aiohttp.ClientSession, url: str | URL, **kwargs: Any) -> dict[str, Any]:
    async with client.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def header(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


# --- HTTP -----------------------------------------------------------------------------------


def test_each_app_is_served_under_its_prefix_with_or_without_stripping_it(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha, serve(echo_app("beta")) as beta:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            await in_thread(proxy.set_route, "dev", "beta", 2, [beta], strip_prefix=True)
            async with aiohttp.ClientSession() as client:
                exact = URL(f"{base}/alpha/x/y%20z?q=1&r=%2F", encoded=True)
                kept = await get_json(client, exact)
                assert kept["upstream"] == "alpha"
                assert kept["path"] == "/alpha/x/y%20z?q=1&r=%2F"
                stripped = await get_json(client, f"{base}/beta/x/y?q=1")
                assert (stripped["upstream"], stripped["path"]) == ("beta", "/x/y?q=1")
                assert (await get_json(client, f"{base}/beta/"))["path"] == "/"

                async def chunks() -> AsyncIterator[bytes]:
                    for _ in range(10):
                        yield b"x" * 1000

                async with client.post(
                    f"{base}/beta/upload", data=chunks(), expect100=True
                ) as response:
                    echoed = await response.json()
                assert (echoed["method"], echoed["path"], echoed["body"]) == (
                    "POST",
                    "/upload",
                    10000,
                )

    asyncio.run(scenario())


def test_an_app_path_without_its_trailing_slash_redirects_permanently(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            async with aiohttp.ClientSession() as client:
                for method in ("GET", "POST"):
                    async with client.request(
                        method, f"{base}/alpha?x=1&y=2", allow_redirects=False
                    ) as response:
                        assert response.status == 308
                        assert response.headers["Location"] == "/alpha/?x=1&y=2"
                async with client.get(f"{base}/alpha", allow_redirects=False) as response:
                    assert response.headers["Location"] == "/alpha/"

    asyncio.run(scenario())


SPOOFED = {
    "Host": "apps.example.org",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Prefix": "/not-from-the-client",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example.org",
    "Forwarded": "for=203.0.113.7;proto=https",
    "X-Real-IP": "203.0.113.7",
    # Read by WSGI servers as X-Forwarded-For and friends (HTTP_X_FORWARDED_FOR).
    "X_Forwarded_For": "203.0.113.8",
    "x_forwarded_proto": "https",
    "X-Forwarded-Port": "443",
}


def test_forwarded_headers_from_a_client_are_replaced_and_the_original_host_kept(proxy, base):
    """An app that takes X-Forwarded-For for the client's address would believe anyone: from a
    client that is not a trusted proxy, the proxy's own values replace the client's."""

    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            async with aiohttp.ClientSession() as client:
                echo = await get_json(client, f"{base}/alpha/", headers=SPOOFED)
                plain = await get_json(client, f"{base}/alpha/")
        assert header(echo, "X-Forwarded-For") == ["127.0.0.1"]
        assert header(echo, "X-Forwarded-Proto") == ["http"]
        assert header(echo, "X-Forwarded-Host") == ["apps.example.org"]
        assert header(echo, "X-Forwarded-Prefix") == ["/alpha"]
        assert header(echo, "Forwarded") == [] and header(echo, "X-Real-IP") == []
        assert header(echo, "X_Forwarded_For") == [] and header(echo, "x_forwarded_proto") == []
        assert header(echo, "X-Forwarded-Port") == []
        assert header(echo, "Host") == ["apps.example.org"]
        assert header(plain, "X-Forwarded-For") == ["127.0.0.1"]
        assert header(plain, "X-Forwarded-Host") == [base.removeprefix("http://")]

    asyncio.run(scenario())


def test_a_trusted_proxys_forwarded_headers_are_kept():
    trusting = Proxy(trusted_proxies=["127.0.0.0/8"])
    trusting.start()
    try:
        base = f"http://127.0.0.1:{trusting.add_listener('dev')}"

        async def scenario() -> None:
            async with serve(echo_app("alpha")) as alpha:
                await in_thread(trusting.set_route, "dev", "alpha", 1, [alpha])
                async with aiohttp.ClientSession() as client:
                    echo = await get_json(client, f"{base}/alpha/", headers=SPOOFED)
            assert header(echo, "X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
            assert header(echo, "X-Forwarded-Proto") == ["https"]
            assert header(echo, "X-Forwarded-Host") == ["evil.example.org"]
            assert header(echo, "X-Forwarded-Prefix") == ["/alpha"]

        asyncio.run(scenario())
    finally:
        trusting.stop()
    with pytest.raises(InvalidInput, match="a trusted proxy is an address"):
        Proxy(trusted_proxies=["not-an-address"])


def test_with_a_domain_each_app_is_its_own_origin(proxy):
    """sales.test.example.com serves sales and nothing else: a page of another app cannot be
    reached under that origin (and so cannot read its cookies or storage)."""
    port = proxy.add_listener("test", domain="test.example.com")
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        async with serve(echo_app("sales")) as sales, serve(echo_app("evil")) as evil:
            await in_thread(proxy.set_route, "test", "sales", 1, [sales])
            await in_thread(proxy.set_route, "test", "evil", 2, [evil])
            async with aiohttp.ClientSession() as client:
                own = {"Host": "sales.test.example.com"}
                echo = await get_json(client, f"{base}/sales/page", headers=own)
                assert echo["upstream"] == "sales"
                async with client.get(f"{base}/", headers=own, allow_redirects=False) as root:
                    assert (root.status, root.headers["Location"]) == (308, "/sales/")
                async with client.get(f"{base}/evil/", headers=own) as other:
                    assert other.status == 404
                # No other name under the domain serves an app: not a name below an app's
                # own host, not the domain itself (either could set cookies for every app).
                for host in (
                    "evil.sales.test.example.com",
                    "test.example.com",
                    "a_b.test.example.com",
                ):
                    for path in ("/sales/page", "/evil/"):
                        async with client.get(f"{base}{path}", headers={"Host": host}) as other:
                            assert other.status == 404, (host, path)
                spelled = {"Host": "Sales.Test.Example.COM."}
                assert (await get_json(client, f"{base}/sales/", headers=spelled))[
                    "upstream"
                ] == "sales"
                # Without the app's own host, the environment's address serves every app.
                assert (await get_json(client, f"{base}/evil/"))["upstream"] == "evil"

    asyncio.run(scenario())


def test_websocket_messages_beyond_the_limit_are_refused():
    small = Proxy(websocket_limit=1024)
    small.start()
    try:
        base = f"http://127.0.0.1:{small.add_listener('dev')}"

        async def scenario() -> None:
            async with serve(echo_app("alpha")) as alpha:
                await in_thread(small.set_route, "dev", "alpha", 1, [alpha], strip_prefix=True)
                async with aiohttp.ClientSession() as client:
                    ws = await client.ws_connect(f"{base}/alpha/ws")
                    await ws.send_str("x" * 100)
                    assert await ws.receive_str() == "alpha:" + "x" * 100
                    await ws.send_str("x" * 4096)
                    message = await ws.receive()
                    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
                    assert ws.close_code == 1009  # message too big

        asyncio.run(scenario())
    finally:
        small.stop()


UPSTREAM_BODY = gzip.compress(b"compressed by the app")
UPSTREAM_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Encoding: gzip\r\n"
    b"Content-Length: " + str(len(UPSTREAM_BODY)).encode() + b"\r\n"
    b"Connection: close, X-Upstream-Hop\r\n"
    b"X-Upstream-Hop: 1\r\n"
    b"Keep-Alive: timeout=99\r\n"
    b"Proxy-Authenticate: Basic\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Upgrade: h2c\r\n"
    b"X-End-To-End: kept\r\n"
    b"\r\n" + UPSTREAM_BODY
)


def test_hop_by_hop_headers_are_stripped_both_ways_and_encodings_kept(proxy, base):
    seen: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(UPSTREAM_RESPONSE)
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [upstream])
            status, headers, body = await raw_exchange(
                base,
                b"GET /alpha/hop HTTP/1.1\r\n"
                b"Host: apps.example.org\r\n"
                b"Connection: close, X-Client-Hop\r\n"
                b"X-Client-Hop: 1\r\n"
                b"Keep-Alive: timeout=5\r\n"
                b"TE: trailers\r\n"
                b"Proxy-Authorization: Basic eDp5\r\n"
                b"Proxy-Connection: keep-alive\r\n"
                b"Upgrade: h2c\r\n"
                b"Accept-Encoding: gzip\r\n"
                b"X-End-To-End: kept\r\n"
                b"\r\n",
            )
        assert status == 200
        assert body == UPSTREAM_BODY
        names = {name.lower() for name, _ in headers}
        assert not names & {"x-upstream-hop", "keep-alive", "proxy-authenticate", "trailer"}
        assert not names & {"upgrade", "transfer-encoding"}
        assert ("Content-Encoding", "gzip") in headers
        assert ("X-End-To-End", "kept") in headers
        received = seen[0].decode("latin-1").lower()
        for name in ("x-client-hop", "keep-alive", "te:", "proxy-authorization", "upgrade"):
            assert f"\r\n{name}" not in received, name
        assert "\r\nproxy-connection" not in received
        assert "\r\naccept-encoding: gzip\r\n" in received
        assert "\r\nx-end-to-end: kept\r\n" in received

    asyncio.run(scenario())


HUGE = 200 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB
HUGE_SHA1 = hashlib.sha1(BLOCK * (HUGE // len(BLOCK))).hexdigest()
#: Far below the 200 MB carried: what buffering a body whole would cost.
MEMORY_HEADROOM = 48 * 1024 * 1024


def streaming_app() -> web.Application:
    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(HUGE)})
        await response.prepare(request)
        for _ in range(HUGE // len(BLOCK)):
            await response.write(BLOCK)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        digest, length = hashlib.sha1(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        return web.json_response({"length": length, "sha1": digest.hexdigest()})

    app = web.Application()
    app.router.add_get("/files/download", download)
    app.router.add_post("/files/upload", upload)
    return app


def test_a_large_download_is_streamed_through_not_held_in_memory(proxy, base):
    async def scenario() -> None:
        async with serve(streaming_app()) as upstream:
            await in_thread(proxy.set_route, "dev", "files", 1, [upstream])
            before = peak = resident_memory()
            digest, length = hashlib.sha1(), 0
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/files/download") as response:
                    assert response.status == 200
                    assert response.headers["Content-Length"] == str(HUGE)
                    async for chunk in response.content.iter_chunked(len(BLOCK)):
                        digest.update(chunk)
                        length += len(chunk)
                        if length % (16 * len(BLOCK)) == 0:
                            peak = max(peak, resident_memory())
        assert (length, digest.hexdigest()) == (HUGE, HUGE_SHA1)
        assert peak - before < MEMORY_HEADROOM

    asyncio.run(scenario())


def test_a_large_upload_is_streamed_through_not_held_in_memory(proxy, base):
    async def scenario() -> None:
        before = peak = resident_memory()

        async def body() -> AsyncIterator[bytes]:
            nonlocal peak
            for sent in range(HUGE // len(BLOCK)):
                if sent % 16 == 0:
                    peak = max(peak, resident_memory())
                yield BLOCK

        async with serve(streaming_app()) as upstream:
            await in_thread(proxy.set_route, "dev", "files", 1, [upstream])
            async with aiohttp.ClientSession() as client:
                async with client.post(
                    f"{base}/files/upload", data=body(), headers={"Content-Length": str(HUGE)}
                ) as response:
                    assert response.status == 200
                    received = await response.json()
        assert received == {"length": HUGE, "sha1": HUGE_SHA1}
        assert peak - before < MEMORY_HEADROOM

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "framing",
    [b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b"Content-Length: 100\r\n\r\nhello"],
)
def test_an_upstream_dying_mid_response_breaks_the_client_response_too(proxy, base, framing):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing)
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream, aiohttp.ClientSession() as client:
            await in_thread(proxy.set_route, "dev", "dying", 1, [upstream])
            async with client.get(f"{base}/dying/") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            assert await in_thread(proxy.inflight, 1) == 0

    asyncio.run(scenario())


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait until ``condition`` holds; a failure guard, not a timing assertion."""

    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), seconds)


def test_a_client_leaving_mid_stream_frees_its_request_and_the_upstream_one(proxy, base):
    upstream_ended = asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: tick\n\n")
                await asyncio.sleep(0.01)
        finally:
            upstream_ended.set()

    async def scenario() -> None:
        app = web.Application(handler_args={"handler_cancellation": True})
        app.router.add_get("/{tail:.*}", events)
        async with serve(app) as upstream:
            await in_thread(proxy.set_route, "dev", "events", 1, [upstream])
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/events/stream") as response:
                    assert await response.content.readline() == b"data: tick\n"
                    assert await in_thread(proxy.inflight, 1) == 1

            async def finished() -> bool:
                return await in_thread(proxy.inflight, 1) == 0

            await eventually(finished)
            await asyncio.wait_for(upstream_ended.wait(), 10)

    asyncio.run(scenario())


# --- pages the proxy answers itself -----------------------------------------------------------


def test_an_app_without_a_route_is_a_503_page_or_json_error(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha, aiohttp.ClientSession() as client:
            async with client.get(f"{base}/ghost/page") as response:
                assert response.status == 503
                assert response.content_type == "text/html"
                assert "ghost is not deployed in dev" in await response.text()
            async with client.get(
                f"{base}/ghost/api", headers={"Accept": "application/json"}
            ) as response:
                assert response.status == 503
                error = (await response.json())["error"]
                assert error["code"] == "not_deployed"
                assert "ghost is not deployed in dev" in error["message"]
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            await get_json(client, f"{base}/alpha/")
            await in_thread(proxy.remove_route, "dev", "alpha")
            async with client.get(f"{base}/alpha/") as response:
                assert response.status == 503
                assert "alpha is not deployed in dev" in await response.text()

    asyncio.run(scenario())


def test_paths_outside_any_app_are_a_404_listing_the_deployed_apps(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha, aiohttp.ClientSession() as client:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            async with client.get(f"{base}/") as response:
                assert response.status == 404
                assert '<a href="/alpha/">alpha</a>' in await response.text()
            async with client.get(
                f"{base}/Not_An_App/", headers={"Accept": "application/json"}
            ) as response:
                assert response.status == 404
                error = (await response.json())["error"]
                assert (error["code"], error["apps"]) == ("not_found", ["alpha"])

    asyncio.run(scenario())


def test_an_unreachable_upstream_is_a_502_and_a_live_worker_takes_over(proxy, base):
    async def scenario() -> None:
        down = f"http://127.0.0.1:{free_port()}"
        await in_thread(proxy.set_route, "dev", "broken", 1, [down])
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/broken/") as response:
                assert response.status == 502
                assert "broken is failing in dev" in await response.text()
            async with client.post(
                f"{base}/broken/", data=b"{}", headers={"Accept": "application/json"}
            ) as response:
                assert response.status == 502
                assert (await response.json())["error"]["code"] == "app_unavailable"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(f"{base}/broken/ws")
            assert refused.value.status == 502
            async with serve(echo_app("alive")) as alive:
                await in_thread(proxy.set_route, "dev", "broken", 2, [down, alive])
                async with client.get(
                    f"{base}/broken/", headers={"Cookie": "conveyor-broken=2.0"}
                ) as response:
                    assert (await response.json())["upstream"] == "alive"
                    assert "conveyor-broken=2.1;" in response.headers["Set-Cookie"]

    asyncio.run(scenario())


def test_json_is_chosen_only_when_the_client_ranks_it_first():
    assert prefers_json("application/json")
    assert prefers_json("application/json, text/plain, */*")
    assert prefers_json("application/problem+json")
    assert not prefers_json("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not prefers_json("*/*")
    assert not prefers_json("text/html, application/json;q=0.5")
    assert not prefers_json("")


# --- affinity and switching -------------------------------------------------------------------


def cookie_of(response: aiohttp.ClientResponse) -> str | None:
    values = response.headers.getall("Set-Cookie", [])
    assert len(values) <= 1, values
    return values[0] if values else None


def test_affinity_cookie_keeps_a_client_on_its_worker(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("w0")) as w0, serve(echo_app("w1")) as w1:
            await in_thread(proxy.set_route, "dev", "app", 7, [w0, w1])
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
                first, second = [], []
                for seen in (first, second):
                    async with client.get(f"{base}/app/") as response:
                        seen.append((await response.json())["upstream"])
                        seen.append(cookie_of(response))
                assert first == ["w0", "conveyor-app=7.0; Path=/app/; HttpOnly; SameSite=Lax"]
                assert second == ["w1", "conveyor-app=7.1; Path=/app/; HttpOnly; SameSite=Lax"]
                for _ in range(5):
                    for index, name in ((1, "w1"), (0, "w0")):
                        async with client.get(
                            f"{base}/app/x", headers={"Cookie": f"a=b; conveyor-app={index}"}
                        ) as response:
                            assert cookie_of(response) is not None  # malformed: chosen again
                        async with client.get(
                            f"{base}/app/x", headers={"Cookie": f"a=b; conveyor-app=7.{index}"}
                        ) as response:
                            assert (await response.json())["upstream"] == name
                            assert cookie_of(response) is None
                for stale in ("99.0", "7.2"):
                    async with client.get(
                        f"{base}/app/", headers={"Cookie": f"conveyor-app={stale}"}
                    ) as response:
                        assert cookie_of(response) is not None

    asyncio.run(scenario())


def test_a_draining_release_keeps_its_cookie_holders_until_it_is_drained(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("blue")) as blue, serve(echo_app("green")) as green:
            await in_thread(proxy.set_route, "dev", "app", 1, [blue])
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:

                async def ask(cookie: str | None = None) -> tuple[str, str | None]:
                    headers = {"Cookie": cookie} if cookie else {}
                    async with client.get(f"{base}/app/", headers=headers) as response:
                        return (await response.json())["upstream"], cookie_of(response)

                upstream, cookie = await ask()
                assert upstream == "blue" and cookie is not None
                held = cookie.split(";")[0]
                await in_thread(proxy.set_route, "dev", "app", 2, [green])
                assert await ask(held) == ("blue", None)
                assert (await ask())[0] == "green"
                await in_thread(proxy.drain, "dev", "app", 1, timeout=5, websocket_grace=0)
                upstream, cookie = await ask(held)
                assert upstream == "green" and cookie is not None
                assert cookie.startswith("conveyor-app=2.0;")
                assert await in_thread(proxy.inflight, 1) == 0

    asyncio.run(scenario())


def switch_app(release: int) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(0.002)
        return web.Response(text=str(release))

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


def test_switching_releases_under_load_fails_no_request(proxy, base):
    """8 clients (half keeping the affinity cookie, half not) send requests without pause while
    the route switches 5 times, each old release drained before its servers stop."""
    switches, clients = 5, 8

    async def scenario() -> None:
        answers: collections.Counter[str] = collections.Counter()
        failures: list[str] = []
        stopping = asyncio.Event()

        async def client_loop(keeps_cookie: bool) -> None:
            jar = aiohttp.CookieJar(unsafe=True) if keeps_cookie else aiohttp.DummyCookieJar()
            async with aiohttp.ClientSession(cookie_jar=jar) as client:
                while not stopping.is_set():
                    try:
                        async with client.get(f"{base}/app/work") as response:
                            text = await response.text()
                            if response.status == 200:
                                answers[text] += 1
                            else:
                                failures.append(f"{response.status}: {text[:200]}")
                    except aiohttp.ClientError as error:
                        failures.append(repr(error))

        async def served(release: int, count: int) -> None:
            while answers[str(release)] < count:
                await asyncio.sleep(0.01)

        async with contextlib.AsyncExitStack() as servers:
            releases = {}
            for release in range(1, switches + 2):
                stack = contextlib.AsyncExitStack()
                releases[release] = stack
                upstreams = [await stack.enter_async_context(serve(switch_app(release)))]
                upstreams.append(await stack.enter_async_context(serve(switch_app(release))))
                servers.push_async_callback(stack.aclose)
                if release == 1:
                    await in_thread(proxy.set_route, "dev", "app", 1, upstreams)
                    load = [
                        asyncio.create_task(client_loop(keeps_cookie=n % 2 == 0))
                        for n in range(clients)
                    ]
                    await asyncio.wait_for(served(1, 50), 20)
                    continue
                await in_thread(proxy.set_route, "dev", "app", release, upstreams)
                await asyncio.wait_for(served(release, 50), 20)
                await in_thread(proxy.drain, "dev", "app", release - 1, timeout=10)
                assert await in_thread(proxy.inflight, release - 1) == 0
                await releases.pop(release - 1).aclose()
            await asyncio.wait_for(served(switches + 1, 100), 20)
            stopping.set()
            await asyncio.gather(*load)
        assert failures == []
        assert set(answers) == {str(release) for release in range(1, switches + 2)}

    asyncio.run(scenario())


# --- WebSockets -----------------------------------------------------------------------------


def test_websockets_are_relayed_both_ways_with_subprotocol_and_close_code(proxy, base):
    closes: list[int | None] = []

    async def scenario() -> None:
        async with serve(echo_app("alpha", closes)) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha], strip_prefix=True)
            async with aiohttp.ClientSession() as client:
                ws = await client.ws_connect(
                    f"{base}/alpha/ws", protocols=("v2.conveyor", "v1.conveyor"), autoping=False
                )
                assert ws.protocol == "v1.conveyor"
                await ws.send_str("hello")
                assert await ws.receive_str() == "alpha:hello"
                await ws.send_bytes(b"\x00\xff")
                assert await ws.receive_bytes() == b"alpha:\x00\xff"
                await ws.ping(b"are you there")
                pong = await ws.receive()
                assert (pong.type, pong.data) == (WSMsgType.PONG, b"are you there")
                assert await in_thread(proxy.inflight, 1) == 1
                await ws.close(code=4001, message=b"bye")
                for _ in range(500):
                    if closes:
                        break
                    await asyncio.sleep(0.01)
                assert closes == [4001]

    asyncio.run(scenario())


def websocket_accept(handshake: bytes) -> bytes:
    for line in handshake.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            magic = value.strip() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            return base64.b64encode(hashlib.sha1(magic).digest())
    raise AssertionError("no Sec-WebSocket-Key")


@pytest.mark.parametrize(
    ("upstream_close", "relayed"),
    [
        (b"\x88\x00", 1000),  # a close frame without a code: 1005 must not go on the wire
        (b"\x88\x02" + (1006).to_bytes(2, "big"), 1011),  # 1006 sent on the wire anyway
        (b"", 1011),  # the connection dropped without a close frame: abnormal, 1006
    ],
)
def test_reserved_close_codes_are_mapped_when_relayed(proxy, base, upstream_close, relayed):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshake = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + websocket_accept(handshake)
            + b"\r\n\r\n"
            + upstream_close
        )
        await writer.drain()
        if upstream_close:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(reader.read(64), 5)

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream, aiohttp.ClientSession() as client:
            await in_thread(proxy.set_route, "dev", "raw", 1, [upstream])
            ws = await client.ws_connect(f"{base}/raw/ws")
            message = await ws.receive()
            assert (message.type, message.data) == (WSMsgType.CLOSE, relayed)
            await ws.close()

    asyncio.run(scenario())


def test_wire_close_codes():
    assert [wire_close_code(c) for c in (None, 0, 1005, 1006, 1015)] == [
        1011,
        1000,
        1000,
        1011,
        1011,
    ]
    assert [wire_close_code(c) for c in (1000, 1001, 1012, 4000)] == [1000, 1001, 1012, 4000]


def test_a_websocket_outlives_the_switch_until_the_drain_closes_it_with_1012(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("blue")) as blue, serve(echo_app("green")) as green:
            await in_thread(proxy.set_route, "dev", "app", 1, [blue])
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
                before = await client.ws_connect(f"{base}/app/ws")
                await before.send_str("one")
                assert await before.receive_str() == "blue:one"
                await in_thread(proxy.set_route, "dev", "app", 2, [green])
                await before.send_str("two")
                assert await before.receive_str() == "blue:two"
                after = await client.ws_connect(f"{base}/app/ws")
                await after.send_str("one")
                assert await after.receive_str() == "green:one"
                assert await in_thread(proxy.inflight, 1) == 1
                drained = asyncio.create_task(
                    in_thread(proxy.drain, "dev", "app", 1, timeout=5, websocket_grace=0.2)
                )
                closing = await before.receive()
                assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1012)
                await drained
                assert before.close_code == 1012
                assert await in_thread(proxy.inflight, 1) == 0
                await after.send_str("still here")
                assert await after.receive_str() == "green:still here"
                await after.close()
                await before.close()

    asyncio.run(scenario())


# --- the API's rules --------------------------------------------------------------------------


def test_misuse_is_refused_with_the_conveyor_error_types(proxy, base):
    with pytest.raises(InvalidInput):
        proxy.set_route("dev", "Bad/Name", 1, ["http://127.0.0.1:1"])
    with pytest.raises(InvalidInput):
        proxy.set_route("dev", "app", 1, [])
    with pytest.raises(InvalidInput):
        proxy.set_route("dev", "app", 1, ["127.0.0.1:8000"])
    with pytest.raises(Conflict):
        proxy.add_listener("dev")
    proxy.set_route("dev", "app", 1, ["http://127.0.0.1:1"])
    with pytest.raises(Conflict):
        proxy.drain("dev", "app", 1)
    with pytest.raises(Conflict):
        proxy.set_route("test", "app", 1, ["http://127.0.0.1:1"])
    proxy.drain("dev", "app", 99)  # not known: nothing to do
    proxy.drain("dev", "other", 1)
    assert proxy.inflight(99) == 0


def test_stopping_the_proxy_closes_websocket_sessions_as_going_away(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha, aiohttp.ClientSession() as client:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            ws = await client.ws_connect(f"{base}/alpha/ws")
            await in_thread(proxy.stop)
            message = await ws.receive()
            assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)
            await ws.close()

    asyncio.run(scenario())


def test_a_stopped_proxy_refuses_calls_and_stops_twice_quietly():
    proxy = Proxy()
    with pytest.raises(Conflict):
        proxy.add_listener("dev")
    proxy.start()
    port = proxy.add_listener("dev")
    proxy.stop()
    proxy.stop()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


class MemoryGate:
    """An honest in-memory gate: who may view which app, and the page views it was told."""

    def __init__(self, allowed: dict[str, set[str | None]]) -> None:
        self.allowed = allowed  # app -> users (None: anonymous) who may view it
        self.views: list[tuple[str, str, str, str]] = []

    async def decide(self, environment, app, cookie, url):
        from conveyor.runtime.proxy_gate import Decision

        user = {"good-session": "ana", "other-session": "eve"}.get(cookie or "")
        if user in self.allowed.get(app, {None}):
            return Decision(True, user, private=app in self.allowed)
        if user is None:
            return Decision(False, sign_in=f"http://console.example/signin?next={url}")
        return Decision(False, user, reason=f"{user} may not view {app}")

    def viewed(self, environment, app, viewer, session):
        self.views.append((environment, app, viewer, session))


def test_the_gate_sends_anonymous_visitors_to_sign_in_and_refuses_others():
    from conveyor.runtime.proxy_gate import Gate

    memory = MemoryGate({"private": {"ana"}})
    gated = Proxy(gate=Gate(memory.decide, memory.viewed))
    gated.start()
    try:
        base = f"http://127.0.0.1:{gated.add_listener('prod')}"

        async def scenario() -> None:
            async with serve(echo_app("private")) as private:
                await in_thread(gated.set_route, "prod", "private", 1, [private])
                async with aiohttp.ClientSession() as client:
                    async with client.get(f"{base}/private/page", allow_redirects=False) as anon:
                        assert anon.status == 303
                        assert anon.headers["Location"] == (
                            f"http://console.example/signin?next={base}/private/page"
                        )
                    eve = {"Cookie": "conveyor_session=other-session"}
                    async with client.get(f"{base}/private/", headers=eve) as refused:
                        assert refused.status == 403
                        assert "eve may not view private" in await refused.text()
                    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                        await client.ws_connect(f"{base}/private/ws", headers=eve)
                    assert caught.value.status == 403
                    ana = {
                        "Cookie": "theme=dark; conveyor_session=good-session; other=1",
                        "Accept": "text/html",
                    }
                    async with client.get(f"{base}/private/", headers=ana) as allowed:
                        assert allowed.status == 200
                        echo = await allowed.json()
                        cookies = allowed.headers.getall("Set-Cookie")
            # The console's session never reaches the app; the app's own cookies do.
            assert header(echo, "Cookie") == ["theme=dark; other=1"]
            assert any(c.startswith("conveyor_visitor=") for c in cookies)
            assert memory.views and memory.views[0][:3] == ("prod", "private", "ana")

        asyncio.run(scenario())
    finally:
        gated.stop()


def test_conveyors_cookies_are_removed_even_without_a_gate(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            async with aiohttp.ClientSession() as client:
                only_ours = {"Cookie": "conveyor_session=abc; conveyor_visitor=x"}
                echo = await get_json(client, f"{base}/alpha/", headers=only_ours)
        assert header(echo, "Cookie") == []

    asyncio.run(scenario())


def test_a_private_app_takes_sockets_and_changes_only_from_its_own_origin():
    """A page of another app on this host (another port: same site) gets the browser to send
    the viewer's session along; a socket it opens, or a form it posts, is refused."""
    from conveyor.runtime.proxy_gate import Gate

    memory = MemoryGate({"private": {"ana"}})
    gated = Proxy(gate=Gate(memory.decide, memory.viewed))
    gated.start()
    try:
        base = f"http://127.0.0.1:{gated.add_listener('prod')}"
        # An odd cookie some app set does not hide the session (nor end up in a loop).
        ana = {"Cookie": 'prefs=dark mode; x="a\\b"; conveyor_session=good-session'}
        elsewhere = {**ana, "Origin": "http://127.0.0.1:1"}
        own = {**ana, "Origin": base}

        async def scenario() -> None:
            async with serve(echo_app("private")) as private:
                await in_thread(gated.set_route, "prod", "private", 1, [private])
                async with aiohttp.ClientSession() as client:
                    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                        await client.ws_connect(f"{base}/private/ws", headers=elsewhere)
                    assert caught.value.status == 403
                    async with client.ws_connect(f"{base}/private/ws", headers=own) as ws:
                        await ws.send_str("hi")
                        assert (await ws.receive()).data == "private:hi"
                    async with client.post(f"{base}/private/x", headers=elsewhere) as posted:
                        assert posted.status == 403
                        assert "only from its own pages" in await posted.text()
                    async with client.post(f"{base}/private/x", headers=own) as posted:
                        assert posted.status == 200
                    async with client.get(f"{base}/private/", headers=elsewhere) as read:
                        assert read.status == 200  # a link from elsewhere still opens it
                        assert read.headers["Cache-Control"] == "private, no-cache"
                        assert "Cookie" in read.headers["Vary"]

        asyncio.run(scenario())
    finally:
        gated.stop()


def cookie_setter() -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="ok")
        for cookie in (
            "conveyor_session=mallorys-session; Path=/",
            "Conveyor_Session=shouting; Path=/",
            " conveyor_visitor=tossed",
            "__Host-conveyor_session=prefixed; Path=/; Secure",
            "theme=dark; Path=/",
        ):
            response.headers.add("Set-Cookie", cookie)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def test_an_app_cannot_set_conveyors_cookies(proxy, base):
    """Cookies ignore ports: an app that set conveyor_session would replace the console's
    session of whoever visits it with one of its choosing."""

    async def scenario() -> None:
        async with serve(cookie_setter()) as setter:
            await in_thread(proxy.set_route, "dev", "setter", 1, [setter])
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/setter/") as answer:
                    cookies = answer.headers.getall("Set-Cookie")
        names = [c.split("=", 1)[0].strip() for c in cookies]
        assert "theme" in names
        assert not [n for n in names if "conveyor_" in n.lower()], cookies

    asyncio.run(scenario())
