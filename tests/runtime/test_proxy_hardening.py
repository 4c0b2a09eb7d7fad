"""What a hostile client or a misbehaving app sends the proxy, byte for byte: trailers, an
app's Connection header, requests without one Host, WebSocket frames that break RFC 6455, a
101 nobody asked for, cookies an app may not set, malformed bodies, forwarding headers."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from conveyor.runtime.proxy_gate import is_private_set_cookie
from conveyor.runtime.proxy_http import response_head
from tests.runtime.test_proxy import (
    base,
    echo_app,
    header,
    in_thread,
    proxy,
    raw_exchange,
    raw_upstream,
    request_heads,
    serve,
    websocket_accept,
)
from tests.runtime.test_proxy_framing import _HANG, connection, one_response

__all__ = ["base", "proxy"]  # fixtures

_HANDSHAKE = (
    b"GET /ws/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


async def exchange(url: str, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    return await asyncio.wait_for(raw_exchange(url, request), _HANG)


def test_trailers_never_become_request_headers(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            status, _, body = await exchange(
                base,
                b"POST /alpha/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                b"Host: evil.example\r\nAuthorization: forged\r\nX-Trailer: 1\r\n\r\n",
            )
            assert status == 200
            echo = json.loads(body)
            assert header(echo, "Host") == ["a.example"]
            assert header(echo, "Authorization") == header(echo, "X-Trailer") == []
            assert echo["body"] == 5

    asyncio.run(scenario())


def test_an_apps_connection_header_cannot_strip_the_response_framing(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in request_heads(reader):
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding\r\n"
                b"Content-Length: 5\r\n\r\nhello"
            )
            await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            async with connection(base) as (reader, writer):
                for _ in range(2):  # the connection goes on: the length framed the body
                    writer.write(b"GET /a/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    head, body = await one_response(reader)
                    assert b"\r\nContent-Length: 5\r\n" in head
                    assert b"Transfer-Encoding" not in head
                    assert body == b"hello"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /alpha/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /alpha/ HTTP/1.1\r\nHost: a\r\nHost: evil\r\nConnection: close\r\n\r\n",
        b"GET /alpha/ HTTP/1.0\r\nHost: a\r\nHost: evil\r\n\r\n",
        # Malformed bodies: an unknown Transfer-Encoding, a bad chunk size.
        b"POST /alpha/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST /alpha/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n",
    ],
)
def test_requests_without_one_host_or_with_a_malformed_body_are_400(proxy, base, request_bytes):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Any request at all: 200 (the 400 must be the proxy's).
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [upstream])
            status, headers, _ = await exchange(base, request_bytes)
            assert status == 400
            assert ("Connection", "close") in headers

    asyncio.run(scenario())


def test_a_malformed_request_after_a_good_one_is_answered_400_after_it(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            async with connection(base) as (reader, writer):
                writer.write(
                    b"GET /alpha/one HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"POST /alpha/two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x\r\n\r\n"
                )
                head, body = await one_response(reader)
                assert head.startswith(b"HTTP/1.1 200") and b'"path": "/alpha/one"' in body
                head, _ = await one_response(reader)
                assert head.startswith(b"HTTP/1.1 400")
                assert await asyncio.wait_for(reader.read(), _HANG) == b""

    asyncio.run(scenario())


def test_client_address_headers_from_a_client_are_dropped(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "alpha", 1, [alpha])
            _, _, body = await exchange(
                base,
                b"GET /alpha/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\nClient-IP: 1.1.1.1\r\n"
                b"True-Client-IP: 2.2.2.2\r\nX-Client-IP: 3.3.3.3\r\nX_Client_IP: 4.4.4.4\r\n\r\n",
            )
            echo = json.loads(body)
            for name in ("Client-IP", "True-Client-IP", "X-Client-IP", "X_Client_IP"):
                assert header(echo, name) == []

    asyncio.run(scenario())


def test_a_101_to_a_request_that_asked_for_none_is_a_502(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nRAW BYTES")
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            status, _, body = await exchange(
                base, b"GET /a/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            )
            assert status == 502
            assert b"RAW BYTES" not in body

    asyncio.run(scenario())


def test_set_cookies_a_browser_could_send_as_conveyors_are_dropped(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: =conveyor_session=evil; Path=/\r\n"
            b"Set-Cookie: conveyor_session\r\nSet-Cookie: a=conveyor_session=x\r\n"
            b"Set-Cookie: theme=dark; Path=/\r\nContent-Length: 0\r\n\r\n"
        )
        await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "a", 1, [upstream])
            _, headers, _ = await exchange(
                base, b"GET /a/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            )
            cookies = [v for n, v in headers if n.lower() == "set-cookie"]
            assert [c for c in cookies if "conveyor_" in c.lower()] == []
            assert "theme=dark; Path=/" in cookies

    asyncio.run(scenario())
    assert is_private_set_cookie("=conveyor_session=evil")
    assert is_private_set_cookie(" =x")
    assert not is_private_set_cookie("session=conveyor-ok; Path=/")


def test_a_gated_apps_answers_keep_out_of_cdns():
    head = response_head(
        200,
        b"OK",
        [(b"CDN-Cache-Control", b"max-age=600"), (b"Surrogate-Control", b"max-age=600")],
        private=True,
        set_cookies=(),
        framing=b"Content-Length: 0\r\n",
    )
    assert b"CDN-Cache-Control" not in head and b"Surrogate-Control" not in head
    assert b"Cache-Control: private, no-cache\r\n" in head


# --- WebSockets -----------------------------------------------------------------------------


def masked(first: int, payload: bytes) -> bytes:
    """A client frame with a zero masking key (the payload unchanged)."""
    return bytes((first, 0x80 | len(payload))) + bytes(4) + payload


@pytest.mark.parametrize(
    "frame",
    [
        bytes((0x81, 5)) + b"hello",  # not masked
        bytes((0x89, 0x80 | 126)) + (200).to_bytes(2, "big") + bytes(4) + b"p" * 200,  # ping > 125
        masked(0x09, b"ping"),  # a control frame without FIN
        masked(0x83, b"op3"),  # reserved opcodes
        masked(0x8B, b"opB"),
        masked(0xC1, b"rsv1"),  # RSV1 without an extension
    ],
)
def test_websocket_frames_breaking_the_protocol_close_with_1002(proxy, base, frame):
    received: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshake = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + websocket_accept(handshake) + b"\r\n\r\n"
        )
        await writer.drain()
        # The app gets the proxy's close frame (masked, 1002), never the bad frame.
        received.append(await reader.readexactly(2 + 4 + 2))

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "ws", 1, [upstream])
            async with connection(base) as (reader, writer):
                writer.write(_HANDSHAKE + b"\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
                assert head.startswith(b"HTTP/1.1 101")
                writer.write(frame)
                data = await asyncio.wait_for(reader.readexactly(4), _HANG)
                assert data[0] == 0x88 and int.from_bytes(data[2:4], "big") == 1002
        first, second, key, code = received[0][0], received[0][1], received[0][2:6], received[0][6:]
        assert first == 0x88 and second & 0x80
        assert bytes(b ^ key[i] for i, b in enumerate(code)) == (1002).to_bytes(2, "big")

    asyncio.run(scenario())


def test_an_apps_masked_close_frame_is_read_unmasked(proxy, base):
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshake = await reader.readuntil(b"\r\n\r\n")
        key = b"\x01\x02\x03\x04"
        payload = (4001).to_bytes(2, "big") + b"bye"
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: "
            + websocket_accept(handshake)
            + b"\r\n\r\n"
            + bytes((0x88, 0x80 | len(payload)))
            + key
            + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        )
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read(64)

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "ws", 1, [upstream])
            async with connection(base) as (reader, writer):
                writer.write(_HANDSHAKE + b"\r\n")
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HANG)
                data = await asyncio.wait_for(reader.readexactly(7), _HANG)
                assert data == b"\x88\x05" + (4001).to_bytes(2, "big") + b"bye"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "request_bytes",
    [
        _HANDSHAKE + b"Content-Length: 5\r\n\r\nhello",
        # Without Connection: Upgrade, a pipelined request once waited behind it forever.
        _HANDSHAKE.replace(b"Connection: Upgrade\r\n", b"")
        + b"\r\nGET /ws/next HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
)
def test_a_websocket_handshake_with_a_body_or_without_connection_upgrade_is_400(
    proxy, base, request_bytes
):
    async def scenario() -> None:
        async with serve(echo_app("alpha")) as alpha:
            await in_thread(proxy.set_route, "dev", "ws", 1, [alpha])
            status, headers, _ = await exchange(base, request_bytes)
            assert status == 400
            assert ("Connection", "close") in headers

    asyncio.run(scenario())
