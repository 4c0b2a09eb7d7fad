"""Flow control toward a client that reads slowly or not at all: what the proxy holds for it
stays bounded, whatever the app sends. The client here never reads; the app counts what the
proxy took from it.

A loopback connection takes megabytes into the kernel at once, where a remote client's takes
tens of kilobytes; so the listener's sockets (and the connections it accepts) get a small send
buffer, as over a real network, and the client a small receive buffer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from conveyor.runtime.proxy import Proxy
from tests.runtime.test_proxy import (
    base,
    in_thread,
    proxy,
    raw_upstream,
    request_heads,
    websocket_accept,
)

__all__ = ["base", "proxy"]  # fixtures

#: The app's answer, far more than any buffer on the way.
ANSWER = 48 * 1024 * 1024
BLOCK = 1024 * 1024
#: What the proxy may take from the app for a client that reads nothing: kernel buffers on
#: both of its sockets and its own bounded ones (a few MiB measured); the whole answer is not.
BOUND = ANSWER // 2
#: How long the app is given to push what it can.
SETTLE = 2.0
#: A long head: the proxy's first write to the client is bigger than the client's connection
#: takes (the head, and whatever of the body came with it), however little of the body the
#: proxy had read by then.
LONG_HEAD = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 48 * 1024) for n in range(4))


def small_send_buffers(proxy: Proxy) -> None:
    for sock in proxy._listeners["dev"].server.sockets:  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)


@contextlib.asynccontextmanager
async def idle_client(url: str) -> AsyncIterator[socket.socket]:
    """A connection to ``url`` with a small receive buffer, which the test never reads."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        yield sock
    finally:
        sock.close()


async def push(writer: asyncio.StreamWriter, pushed: list[int], size: int) -> None:
    """Send ``size`` bytes in blocks, counting in ``pushed`` what the proxy took."""
    for _ in range(size // BLOCK):
        writer.write(b"x" * BLOCK)
        await writer.drain()
        pushed[0] += BLOCK


def test_an_answer_waits_for_a_client_whose_connection_filled_before_it_streamed(proxy, base):
    """The proxy's first write of an answer (head and first body bytes) can fill a slow
    client's connection before the app's connection is linked to it: the app must be held
    back all the same, not read to the end into the proxy's memory."""
    pushed = [0]

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % ANSWER + LONG_HEAD + b"\r\n")
        await push(writer, pushed, ANSWER)

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "files", 1, [upstream])
            small_send_buffers(proxy)
            async with idle_client(base) as client:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(client, b"GET /files/big HTTP/1.1\r\nHost: h\r\n\r\n")
                await asyncio.sleep(SETTLE)
                assert pushed[0] < BOUND, f"the proxy took {pushed[0] >> 20} MiB"

    asyncio.run(scenario())


def test_a_client_reading_nothing_gets_no_more_pipelined_answers_buffered(proxy, base):
    """Pipelined requests are answered one after the other; a client that reads none of the
    answers must not have the proxy hold one answer after another for it."""
    requests = [0]
    answer = 60 * 1024  # one TCP segment on loopback: whole in the proxy before it answers

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in request_heads(reader):
            requests[0] += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % answer)
            writer.write(b"x" * answer)
            await writer.drain()

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "files", 1, [upstream])
            small_send_buffers(proxy)
            async with idle_client(base) as client:
                pipelined = b"GET /files/page HTTP/1.1\r\nHost: h\r\n\r\n" * 64
                await asyncio.get_running_loop().sock_sendall(client, pipelined)
                await asyncio.sleep(SETTLE)
                # A few answers fill the client's connection; then the proxy waits for it.
                assert requests[0] < 16, f"{requests[0]} answers held for the client"

    asyncio.run(scenario())


def test_a_websocket_client_reading_nothing_holds_the_app_back_from_the_start(proxy, base):
    """The app's 101 (and what follows it) can fill a slow client's connection before the
    tunnel starts: the tunnel must not start reading the app regardless."""
    pushed = [0]

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshake = await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + websocket_accept(handshake) + b"\r\n" + LONG_HEAD + b"\r\n"
        )
        frame = b"\x82\x7f" + BLOCK.to_bytes(8, "big") + b"x" * BLOCK  # binary, unmasked
        for _ in range(ANSWER // BLOCK):
            writer.write(frame)
            await writer.drain()
            pushed[0] += BLOCK

    async def scenario() -> None:
        async with raw_upstream(respond) as upstream:
            await in_thread(proxy.set_route, "dev", "live", 1, [upstream])
            small_send_buffers(proxy)
            async with idle_client(base) as client:
                await asyncio.get_running_loop().sock_sendall(
                    client,
                    b"GET /live/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                )
                await asyncio.sleep(SETTLE)
                assert pushed[0] < BOUND, f"the proxy took {pushed[0] >> 20} MiB"

    asyncio.run(scenario())


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(app_side: list[str]) -> Respond:
    """An app that answers ANSWER bytes, noting in ``app_side`` whether it sent them all or
    was cut off."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ANSWER)
        try:
            await push(writer, [0], ANSWER)
            app_side.append("sent it all")
        except ConnectionError:
            app_side.append("cut off")

    return respond


def _stall_proxy() -> Proxy:
    """A proxy that cuts off a client taking nothing for 1 s (the default is minutes)."""
    stalling = Proxy(write_stall=1.0)
    stalling.start()
    return stalling


def test_a_client_that_takes_nothing_is_cut_off_and_the_app_connection_with_it():
    """Flow control bounds what the proxy holds for a client that stops reading; the stall
    limit bounds how long it holds the client's connection and the app's."""
    app_side: list[str] = []
    stalling = _stall_proxy()
    try:
        base = f"http://127.0.0.1:{stalling.add_listener('dev')}"

        async def scenario() -> None:
            async with raw_upstream(answering(app_side)) as upstream:
                await in_thread(stalling.set_route, "dev", "files", 1, [upstream])
                small_send_buffers(stalling)
                async with idle_client(base) as client:
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(client, b"GET /files/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    for _ in range(200):  # the sweep looks every 0.2 s
                        if app_side:
                            break
                        await asyncio.sleep(0.05)
                    assert app_side == ["cut off"]
                    assert not stalling._listeners["dev"].connections

        asyncio.run(scenario())
    finally:
        stalling.stop()


def test_a_slow_reader_is_not_cut_off():
    """A client that takes its answer slowly drains its connection now and then: it gets the
    whole answer, however long that takes past the stall limit."""
    size = 2 * 1024 * 1024
    stalling = _stall_proxy()
    try:
        base = f"http://127.0.0.1:{stalling.add_listener('dev')}"

        async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            await push(writer, [0], size)

        async def scenario() -> int:
            async with raw_upstream(respond) as upstream:
                await in_thread(stalling.set_route, "dev", "files", 1, [upstream])
                small_send_buffers(stalling)
                async with idle_client(base) as client:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(client, b"GET /files/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    received, started = 0, loop.time()
                    while True:  # at most 640 KiB/s: some seconds, past the 1 s limit
                        data = await loop.sock_recv(client, 64 * 1024)
                        if not data:
                            break
                        received += len(data)
                        if received >= size:  # the head's bytes make it a little more
                            break
                        await asyncio.sleep(0.1)
                    assert loop.time() - started > 2
                    return received

        assert asyncio.run(scenario()) >= size
    finally:
        stalling.stop()


def test_a_client_taking_a_trickle_is_not_cut_off():
    """A client that takes 4 KiB every 0.25 s does not let its connection's buffer drain to the
    low mark for many times the limit, yet it takes something: it is not cut off."""
    app_side: list[str] = []
    stalling = _stall_proxy()
    try:
        base = f"http://127.0.0.1:{stalling.add_listener('dev')}"

        async def scenario() -> int:
            async with raw_upstream(answering(app_side)) as upstream:
                await in_thread(stalling.set_route, "dev", "files", 1, [upstream])
                small_send_buffers(stalling)
                async with idle_client(base) as client:
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(client, b"GET /files/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    received = 0
                    for _ in range(16):  # 4 s: four times the limit
                        await asyncio.sleep(0.25)
                        data = await asyncio.wait_for(loop.sock_recv(client, 4096), 2)
                        assert data, "the proxy closed the connection"
                        received += len(data)
                    assert not app_side
                    assert stalling._listeners["dev"].connections
                    return received

        assert asyncio.run(scenario()) > 16 * 1024
    finally:
        stalling.stop()


def test_a_client_that_stops_reading_below_the_high_mark_is_cut_off():
    """An answer small enough never to pause writing (it waits in the kernel's queue and the
    proxy's buffer) to a client that reads nothing: the connection is cut off once the limit
    passes, not kept open (a close waits for the proxy's buffer to empty, which it never
    would)."""
    stalling = _stall_proxy()
    try:
        base = f"http://127.0.0.1:{stalling.add_listener('dev')}"
        size = 48 * 1024

        async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
            await writer.drain()

        async def scenario() -> None:
            async with raw_upstream(respond) as upstream:
                await in_thread(stalling.set_route, "dev", "files", 1, [upstream])
                small_send_buffers(stalling)
                async with idle_client(base) as client:
                    loop = asyncio.get_running_loop()
                    await loop.sock_sendall(client, b"GET /files/ HTTP/1.1\r\nHost: h\r\n\r\n")
                    connections = stalling._listeners["dev"].connections
                    for _ in range(40):  # until the proxy has accepted it
                        if connections:
                            break
                        await asyncio.sleep(0.05)
                    assert connections
                    for _ in range(100):  # the sweep looks every 0.2 s; the limit is 1 s
                        if not connections:
                            break
                        await asyncio.sleep(0.05)
                    assert not connections

        asyncio.run(scenario())
    finally:
        stalling.stop()
