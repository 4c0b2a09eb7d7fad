"""The proxy's own HTTP/1.1 and WebSocket handling, byte for byte: what httptools parses and
the proxy writes back (pipelining, HEAD, bodies framed by the connection's end, interim
answers, header limits, a pooled connection the app closed, fragmented WebSocket messages)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from conveyor.runtime.proxy import Proxy
from conveyor.runtime.proxy_tunnel import close_frame, frame_header
from tests.runtime.test_proxy import (
    base,
    echo_app,
    in_thread,
    proxy,
    raw_exchange,
    raw_upstream,
    serve,
)

__all__ = ["base", "proxy"]  # fixtures


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a Content-Length body from a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def test_pipelined_requests_are_answered_in_order(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha], strip_prefix=True)
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"".join(b"GET /alpha/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(5))
            )
            paths = []
            for _ in range(5):
                head, body = await read_response(reader)
                assert head.startswith(b"HTTP/1.1 200")
                paths.append(body.split(b'"path": "')[1].split(b'"')[0])
            assert paths == [b"/%d" % n for n in range(5)]
            # HEAD: the length of the body a GET would get, and no body; the connection
            # goes on.
            writer.write(b"HEAD /alpha/x HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"\r\nContent-Length: " in head
            writer.write(b"GET /alpha/after-head HTTP/1.1\r\nHost: x\r\n\r\n")
            _, body = await read_response(reader)
            assert b'"path": "/after-head"' in body
            writer.close()

    asyncio.run(scenario())


def test_a_body_ended_by_the_connection_an_interim_answer_and_http_1_0(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "old", 1, [upstream])
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/old/") as response:
                    assert response.status == 200
                    assert response.headers["Transfer-Encoding"] == "chunked"
                    assert await response.read() == b"until the end"
            status, headers, body = await raw_exchange(
                base, b"GET /old/ HTTP/1.0\r\nHost: x\r\n\r\n"
            )
            assert (status, body) == (200, b"until the end")
            assert ("Connection", "close") in headers

    asyncio.run(scenario())


def test_header_limits_each_way(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * (70 * 1024) + b"\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream, serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "big", 1, [upstream])
            await in_thread(proxy.set_route, "dev", "alpha", 2, [alpha])
            status, _, _ = await raw_exchange(
                base, b"GET /big/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 502
            fits = b"X-Fits: " + b"y" * 8000 + b"\r\n"  # (aiohttp's own limit is 8190)
            status, _, _ = await raw_exchange(
                base, b"GET /alpha/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fits + b"\r\n"
            )
            assert status == 200
            too_big = b"X-Big: " + b"y" * (17 * 1024) + b"\r\n"
            status, _, _ = await raw_exchange(
                base, b"GET /alpha/ HTTP/1.1\r\nHost: x\r\n" + too_big + b"\r\n"
            )
            assert status == 431

    asyncio.run(scenario())


def test_a_get_meeting_a_pooled_connection_the_app_closed_is_retried(proxy, base):
    answered = 0

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await reader.readuntil(b"\r\n\r\n")
        answered += 1
        # Keep-alive by its head, then closed at once: the pool still holds the connection.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "flaky", 1, [upstream])
            async with aiohttp.ClientSession() as client:
                for _ in range(3):
                    async with client.get(f"{base}/flaky/") as response:
                        assert (response.status, await response.read()) == (200, b"ok")
                        await asyncio.sleep(0.05)  # the app's close reaches the proxy first
        assert answered == 3

    asyncio.run(scenario())


def test_a_chunked_upload_is_reframed_for_the_app(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            status, _, body = await raw_exchange(
                base,
                b"POST /alpha/up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
            assert status == 200
            assert b'"body": 11' in body

    asyncio.run(scenario())


def test_a_fragmented_websocket_message_beyond_the_limit_is_refused():
    small = Proxy(websocket_limit=1024)
    small.start()
    try:
        base = f"http://127.0.0.1:{small.add_listener('dev')}"

        async def scenario() -> None:
            async with serve(echo_app("alpha")) as alpha:
                await in_thread(small.set_route, "dev", "alpha", 1, [alpha])
                host, port = base.removeprefix("http://").split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"GET /alpha/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101")
                # Three fragments of 500 bytes (TEXT without FIN, CONTINUATION, CONTINUATION
                # with FIN), masked with a zero key: each fits, the message does not.
                for first_byte in (0x01, 0x00, 0x80):
                    writer.write(
                        bytes((first_byte, 0x80 | 126))
                        + (500).to_bytes(2, "big")
                        + bytes(4)
                        + b"x" * 500
                    )
                data = await asyncio.wait_for(reader.read(2 + 2), 10)
                assert data[0] == 0x88 and int.from_bytes(data[2:4], "big") == 1009
                writer.close()

        asyncio.run(scenario())
    finally:
        small.stop()


@pytest.mark.parametrize("split", [1, 2, 3, 5])
def test_frame_headers_are_read_across_reads(split):
    frame = bytes((0x82, 0x80 | 126)) + (300).to_bytes(2, "big") + b"mask"
    assert frame_header(frame, 0) == (8, 2, 300)
    assert frame_header(frame[:split], 0) is None
    assert frame_header(close_frame(1000, b"bye"), 0) == (2, 8, 5)
