"""Framing through the proxy, byte for byte: the proxy writes each message's framing itself
(a client's or an app's ``Connection`` header cannot strip it), and an app's bytes past the
end of its response break its connection instead of reaching the next request's client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tests.runtime.test_proxy import (
    base,
    in_thread,
    proxy,
    raw_exchange,
    raw_upstream,
    request_heads,
    serve,
)

__all__ = ["base", "proxy"]  # fixtures

#: Guards a scenario that would hang without the fix; never a measure of speed.
_HANG = 10


def recording_app(seen: list[tuple[str, str, bytes]]) -> web.Application:
    """Answers each request with its path; records (method, path, body) of each."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.raw_path, body))
        return web.Response(text=f"{request.method} {request.raw_path} body={len(body)}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def one_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await asyncio.wait_for(reader.readexactly(length), _HANG)


def test_connection_cannot_strip_a_requests_framing_or_host(proxy, base):
    """The smuggling the review found: ``Connection: Content-Length`` took the length out of
    the head sent to the app while the proxy streamed the body, so the body was read as a
    second request, on a pooled connection the next client's request then fed."""
    seen: list[tuple[str, str, bytes]] = []
    smuggled = (
        b"POST /a/capture HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"Content-Length: 300\r\n\r\n"
    )

    async def scenario() -> None:
        async with serve(recording_app(seen)) as app:
            await in_thread(proxy.set_route, "dev", "a", 1, [app])
            async with connection(base) as (reader, writer):
                writer.write(
                    b"POST /a/x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Content-Length, "
                    b"Host, Transfer-Encoding\r\nContent-Length: %d\r\n\r\n"
                    % len(smuggled)
                    + smuggled
                )
                head, body = await one_response(reader)
                assert head.startswith(b"HTTP/1.1 200")
                assert body == b"POST /a/x body=%d" % len(smuggled)
            async with connection(base) as (reader, writer):
                writer.write(
                    b"GET /a/victim HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer SECRET\r\n\r\n"
                )
                head, body = await one_response(reader)
                assert body == b"GET /a/victim body=0"
        assert seen == [("POST", "/a/x", smuggled), ("GET", "/a/victim", b"")]

    asyncio.run(scenario())


def test_the_app_gets_the_proxys_own_framing_and_a_host(proxy, base):
    heads: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        if b"chunked" in head:
            heads.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            port = upstream.rsplit(":", 1)[1].encode()
            # HTTP/1.0 without a Host: the app gets the upstream's address as the Host.
            status, _, _ = await raw_exchange(base, b"POST /a/x HTTP/1.0\r\n\r\n")
            assert status == 200
            assert b"\r\nHost: 127.0.0.1:" + port + b"\r\n" in heads[-1]
            # Content-Length: 0 is said again; Connection cannot hide the Host.
            status, _, _ = await raw_exchange(
                base,
                b"POST /a/x HTTP/1.1\r\nHost: h\r\nConnection: close, host, content-length\r\n"
                b"Content-Length: 0\r\n\r\n",
            )
            assert status == 200
            assert b"\r\nHost: h\r\n" in heads[-1]
            assert b"\r\nContent-Length: 0\r\n" in heads[-1]
            # A chunked body is re-chunked, with the proxy's own Transfer-Encoding line.
            status, _, _ = await raw_exchange(
                base,
                b"POST /a/x HTTP/1.1\r\nHost: h\r\nConnection: close, transfer-encoding\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            assert status == 200
            chunked_head = heads[-2]
            assert chunked_head.count(b"Transfer-Encoding") == 1
            assert b"\r\nTransfer-Encoding: chunked\r\n" in chunked_head
            assert b"Content-Length" not in chunked_head
            assert heads[-1] == b"5\r\nhello\r\n0\r\n\r\n"

    asyncio.run(scenario())


def test_bytes_after_a_response_in_the_same_packet_close_the_connection(proxy, base):
    """The response splitting the review found: llhttp went on parsing after the end of a
    response, as a second one whose body reached the client."""
    closed: list[str] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: sid=EVIL\r\n\r\nEVIL!"
        if b"HEAD " in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        elif b"/204" in head:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" + extra)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + extra)
        await writer.drain()
        # The proxy must close this connection, not send it another request.
        path = head.split(b" ", 2)[1].decode()
        closed.append(path + (" closed" if not await reader.read() else " reused"))

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            status, headers, body = await raw_exchange(
                base, b"GET /a/cl HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            )
            assert (status, body) == (200, b"hi")
            assert ("Content-Length", "2") in headers
            async with connection(base) as (reader, writer):
                writer.write(b"GET /a/204 HTTP/1.1\r\nHost: h\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
                assert head.startswith(b"HTTP/1.1 204") and b"EVIL" not in head
                writer.write(b"HEAD /a/head HTTP/1.1\r\nHost: h\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
                assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 5\r\n" in head
                writer.write(b"GET /a/cl HTTP/1.1\r\nHost: h\r\n\r\n")
                head, body = await one_response(reader)
                assert b"EVIL" not in head and body == b"hi"
            for _ in range(100):
                if len(closed) == 4:
                    break
                await asyncio.sleep(0.05)
        assert sorted(closed) == ["/a/204 closed", "/a/cl closed", "/a/cl closed", "/a/head closed"]

    asyncio.run(scenario())


def test_a_late_body_after_a_204_never_reaches_another_client(proxy, base):
    """A 204 whose (illegal) body, a whole response, comes later: the connection must not be
    handed to the next client, whose request that response would answer."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/first" not in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nvictim's page!")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        # Should a next request come on this connection (another client's), the stale
        # response goes out now, as it would a moment after the 204.
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\nSet-Cookie: sid=ATTACKER\r\n\r\n"
                b"stale response for you"
            )
            await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            async with connection(base) as (reader, writer):
                writer.write(b"GET /a/first HTTP/1.1\r\nHost: h\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
                assert head.startswith(b"HTTP/1.1 204")
            async with connection(base) as (reader, writer):
                writer.write(b"GET /a/victim HTTP/1.1\r\nHost: h\r\n\r\n")
                head, body = await one_response(reader)
                assert b"ATTACKER" not in head
                assert body == b"victim's page!"

    asyncio.run(scenario())


def test_a_body_that_arrives_before_its_head_is_sent_on_does_not_stall(proxy, base):
    """An app that answers in one burst fills the proxy's holding buffer before the head goes
    out, so the proxy stops reading from it; it must read again once the client takes the
    stream, whether or not the client's side ever fills up (it stalled on uvloop, where one
    loop pass reads the whole burst)."""
    size = 4 * 1024 * 1024

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in request_heads(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
            await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "burst", 1, [upstream])
            async with connection(base) as (reader, writer):
                for _ in range(8):  # on one connection, as a load generator sends them
                    writer.write(b"GET /burst/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    head, body = await one_response(reader)
                    assert head.startswith(b"HTTP/1.1 200") and len(body) == size

    asyncio.run(scenario())
