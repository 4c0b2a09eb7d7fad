"""The client side of the proxy: one asyncio Protocol per client connection, HTTP/1.1 parsed
by ``httptools``, each request handed to the environment's handler as a ``Request``.

Requests on a connection are answered in order (pipelined ones wait their turn, with reading
paused), each once the client has taken most of the answer before it. A request body is
buffered only until the handler attaches the connection to the app (``Body.attach``); from
then on it goes straight to the app's socket, and each side's write buffer filling up pauses
reading on the other side. A client that goes away cancels its
request's handler, and with it the upstream exchange. After a WebSocket handshake the
connection carries a ``proxy_tunnel.Tunnel``'s bytes.

Internal to ``conveyor.runtime.proxy``; runs only on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import ssl
import struct
import termios
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import httptools

from conveyor.runtime.proxy_http import LAST_CHUNK, Answer, Headers, chunk

#: Longest request line or header line a client may send, and all of them together.
CLIENT_LINE_LIMIT = 16 * 1024
_CLIENT_HEAD_LIMIT = 8 * CLIENT_LINE_LIMIT
#: A request body buffered beyond this (before the app's connection takes it) pauses reading.
_BODY_BUFFER = 256 * 1024
#: Write-buffer marks of every proxy connection, both sides: past the high one the other side
#: stops being read, below the low one it is read again. Set explicitly: uvloop's own low mark
#: (a few bytes) differs from asyncio's (a quarter of the high one).
WRITE_HIGH, WRITE_LOW = 64 * 1024, 16 * 1024
#: A client connection idle this long between requests is closed (aiohttp's default too).
KEEPALIVE_TIMEOUT = 75.0
#: A client that takes nothing for this long while something waits to be sent to it (in the
#: proxy's buffer or the kernel's send queue) is cut off, and the app connection streaming to
#: it with it. A reader that takes any of it, however slowly, is never cut off.
WRITE_STALL_TIMEOUT = 120.0

_log = logging.getLogger("conveyor.proxy")


class Sink(Protocol):
    """Where a request body goes once the app's connection is attached."""

    def send(self, data: bytes) -> None: ...


class Body:
    """A request's body as it arrives from the client."""

    __slots__ = ("conn", "chunks", "size", "complete", "sink", "chunked", "length", "waiter")

    def __init__(self, conn: ClientConnection, chunked: bool, length: int | None = None) -> None:
        self.conn = conn
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.sink: Sink | None = None
        #: Sent to the app chunked (the client sent it so): re-framed on the way.
        self.chunked = chunked
        #: Otherwise its length, as the parser reads it (the app is told this one).
        self.length = length
        self.waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.send(chunk(data) if self.chunked else data)
            return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _BODY_BUFFER:
            self.conn.pause("body")

    def finish(self) -> None:
        self.complete = True
        if self.sink is not None and self.chunked:
            self.sink.send(LAST_CHUNK)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def attach(self, sink: Sink) -> None:
        """Send what arrived so far to ``sink``, and the rest as it comes."""
        if self.chunks:
            data = b"".join(self.chunks)
            self.chunks.clear()
            self.size = 0
            sink.send(chunk(data) if self.chunked else data)
        if self.complete and self.chunked:
            sink.send(LAST_CHUNK)
        self.sink = sink
        self.conn.resume("body")


class Request:
    """One request from a client, as the environment's handler sees it."""

    __slots__ = (
        "conn",
        "method",
        "raw_path",
        "headers",
        "version",
        "keep_alive",
        "body",
        "host",
        "upgrade",
        "head_sent",
        "declared_empty",
    )

    def __init__(
        self,
        conn: ClientConnection,
        method: str,
        raw_path: str,
        headers: Headers,
        version: str,
        keep_alive: bool,
        body: Body | None,
    ) -> None:
        self.conn = conn
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.version = version
        # An HTTP/1.0 client is answered once, then the connection closes.
        self.keep_alive = keep_alive and version == "1.1"
        #: None: the request has no body (no Content-Length above 0, not chunked).
        self.body = body
        self.host = headers.get("Host") or conn.local
        #: The bytes after the head of a request that upgrades the connection (WebSocket).
        self.upgrade: bytes | None = None
        #: The response's head is out: only closing the connection can signal a failure now.
        self.head_sent = False
        #: No body, and the client said so with ``Content-Length: 0`` (the app is told too).
        self.declared_empty = False

    @property
    def remote(self) -> str | None:
        return self.conn.remote

    @property
    def scheme(self) -> str:
        return self.conn.scheme

    def answer(self, answer: Answer) -> None:
        """Send a whole response the proxy made itself."""
        body = self.body
        if body is not None and not body.complete:
            self.keep_alive = False  # the rest of the body is not read: the connection closes
        self.head_sent = True
        self.conn.write(answer.serialise(head=self.method == "HEAD", close=not self.keep_alive))


class ClientConnection(asyncio.Protocol):
    """One client's connection to an environment's listener."""

    def __init__(
        self,
        handle: Callable[[Request], Awaitable[None]],
        scheme: str,
        connections: set[ClientConnection],
    ) -> None:
        self.handle = handle
        self.scheme = scheme
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.local = ""
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        #: The exchange on the app's side that flow control links this connection to.
        self.peer: asyncio.BaseTransport | None = None
        #: After a WebSocket handshake: whose bytes this connection now carries.
        self.tunnel: Any = None
        self.idle_since = 0.0
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._current: Request | None = None
        self._url = b""
        self._items: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = False
        self._too_large = False
        #: The status of a request the parser refused (0: none): answered after the others.
        self._failed = 0
        self._paused: set[str] = set()
        self._writing_paused = False
        #: While something waits to be sent: since when the client took nothing, and how
        #: many bytes it had acknowledged then.
        self._stall: tuple[float, int] | None = None
        self._drained: asyncio.Future[None] | None = None

    # --- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else None
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.local = (
                f"{local[0]}:{local[1]}" if ":" not in local[0] else f"[{local[0]}]:{local[1]}"
            )
        self.idle_since = asyncio.get_running_loop().time()
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.client_lost()
        elif self._task is not None:
            # A client that goes away cancels its request, and with it the upstream one.
            self._task.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        current = self._current
        if current is not None and current.body is not None:
            current.body.finish()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self._in_head:
            self._head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self._bad_request(431 if self._too_large else 400)
            return
        if self._too_large or self._head_size > 2 * _CLIENT_HEAD_LIMIT:
            self._bad_request(431)

    def _upgraded(self, rest: bytes) -> None:
        request = self._last_request()
        if request is not None and request.headers.get("Upgrade", "").lower() == "websocket":
            # Reading stops until the app accepts; the bytes after the head wait with it.
            request.upgrade = rest
            self.pause("upgrade")
            return
        # Another protocol (h2c): answered as plain HTTP/1.1, on a fresh parser.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)

    def _last_request(self) -> Request | None:
        if self._queue:
            return self._queue[-1]
        task = self._task
        return getattr(task, "request", None) if task is not None else None

    def _bad_request(self, status: int) -> None:
        """The parser failed: nothing more is read. The client hears why (400 or 431), after
        the answers to the requests before the bad one, then the connection closes."""
        if self.transport is None or self.transport.is_closing() or self._failed:
            return
        self._failed = status
        self.pause("failed")
        current, task = self._current, self._task
        if current is not None and self._queue and self._queue[-1] is current:
            self._queue.pop()  # a pipelined request that went wrong: never served
        elif current is not None and task is not None and task.request is current:  # type: ignore[attr-defined]
            # The request being answered went wrong (its body, say): unless its answer has
            # begun, it is cancelled and the failure is the answer.
            if current.head_sent:
                self.abort()
            else:
                task.cancel()  # (maybe before it even started)
                task.add_done_callback(lambda _: self._cancelled(task))
            return
        if task is None and not self._queue:
            self._answer_failure()

    def _cancelled(self, task: asyncio.Task[None]) -> None:
        """A request cancelled because its own bytes went wrong: the failure is its answer."""
        if self._task is task:
            self._task = None
        if task.request.head_sent or self.closed:  # type: ignore[attr-defined]
            self.abort()
        else:
            self._answer_failure()

    def _answer_failure(self) -> None:
        status = self._failed
        reason = "headers too large" if status == 431 else "malformed request"
        answer = Answer.text(status, f"Bad request: {reason}", "text/plain")
        self.write(answer.serialise(close=True))
        self.close()

    # --- flow control --------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.peer is not None:
            self.peer.pause_reading()  # type: ignore[attr-defined]

    def stalled_for(self, now: float) -> float:
        """Seconds the client has taken nothing while something waits to be sent to it;
        every byte it acknowledges starts the count again."""
        transport = self.transport
        acked = _acknowledged(transport) if transport is not None else None
        if transport is None or acked is None or not _waiting(transport):
            self._stall = None
            return 0.0
        if self._stall is None or acked != self._stall[1]:
            self._stall = (now, acked)
        return now - self._stall[0]

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.peer is not None and not self.peer.is_closing():
            self.peer.resume_reading()  # type: ignore[attr-defined]
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    @property
    def writing_paused(self) -> bool:
        """The client is not keeping up: its connection's write buffer is over the high-water
        mark. An app connection linked to it now must not be read until it drains."""
        return self._writing_paused

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._writing_paused and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Break the connection: the client must not take a truncated body for a whole one."""
        if self.transport is not None:
            self.transport.abort()

    # --- httptools' callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._items = []
        self._head_size = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > CLIENT_LINE_LIMIT:
            self._too_large = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer fields: dropped, never taken for headers
        self._items.append((name, value))
        if len(name) + len(value) > CLIENT_LINE_LIMIT:
            self._too_large = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._too_large or sum(len(n) + len(v) for n, v in self._items) > _CLIENT_HEAD_LIMIT:
            self._too_large = True
            return
        parser = self.parser
        items = self._items
        version = parser.get_http_version()
        # The body as llhttp frames it (it refuses a Content-Length beside a Transfer-Encoding,
        # two Content-Lengths, a Transfer-Encoding not ending in chunked): the app is told
        # this framing, by the proxy, never the client's headers as they came.
        length: int | None = None
        chunked = False
        hosts = 0
        for name, value in items:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value.strip())  # digits only: llhttp checked
            elif lower == b"transfer-encoding":
                chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
            elif lower == b"host":
                hosts += 1
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: exactly one Host in HTTP/1.1, never several.
            raise ValueError("a request needs one Host header")
        body = None
        if chunked:
            body = Body(self, chunked=True)
        elif length:
            body = Body(self, chunked=False, length=length)
        request = Request(
            self,
            parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            Headers(items),
            version,
            parser.should_keep_alive(),
            body,
        )
        request.declared_empty = length == 0 and not chunked
        self._current = request
        if self._task is None:
            self._start(request)
        else:
            self._queue.append(request)
            self.pause("queue")

    def on_body(self, data: bytes) -> None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.feed(data)

    def on_message_complete(self) -> None:
        current = self._current
        if current is not None and current.body is not None:
            current.body.finish()
        self._current = None

    # --- answering -----------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(request))
        task.request = request  # type: ignore[attr-defined]
        self._task = task

    async def _serve(self, request: Request) -> None:
        try:
            await self.handle(request)
            # The answer is written, but maybe not yet taken: a client that does not read gets
            # no further answer (pipelined, or sent after this one) until it does, so what the
            # proxy holds for it stays bounded.
            await self.drain()
        except asyncio.CancelledError:
            self._task = None
            if not self._failed:  # else cancelled because its own bytes went wrong: answered
                self.abort()
            raise
        except Exception:  # noqa: BLE001 - one request's failure must not end the listener
            _log.exception("the proxy failed on %s %s", request.method, request.raw_path)
            if not request.head_sent:
                request.keep_alive = False
                request.answer(Answer.text(500, "Internal proxy error", "text/plain"))
            self._task = None
            self.close()
            return
        self._task = None
        body = request.body
        if self.tunnel is not None:
            return
        if self._failed and not self._queue:
            self._answer_failure()
            return
        if not request.keep_alive or (body is not None and not body.complete):
            self.close()
            return
        if request.upgrade is not None:
            # A WebSocket handshake the app refused: back to HTTP on a fresh parser.
            self.parser = httptools.HttpRequestParser(self)
            rest, request.upgrade = request.upgrade, None
            self.resume("upgrade")
            if rest:
                self.data_received(rest)
        if self._queue and self._task is None:
            following = self._queue.popleft()
            if not self._queue:
                self.resume("queue")
            self._start(following)
        else:
            self.idle_since = asyncio.get_running_loop().time()

    @property
    def busy(self) -> bool:
        return self._task is not None or self.tunnel is not None


#: Where Linux's struct tcp_info keeps tcpi_bytes_acked (a u64; Linux 4.1 and later).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120


def _acknowledged(transport: asyncio.BaseTransport) -> int | None:
    """How many bytes the client has acknowledged on this connection (TCP_INFO), a count that
    only grows: the kernel's word on progress, which the proxy's own buffers do not give (a
    TLS transport's hides the buffer of the connection under it, and a trickle is taken from
    the kernel's queue long before either shrinks). None where it cannot be read."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    if len(info) < _BYTES_ACKED_AT + _BYTES_ACKED.size:
        return None
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0])


def _waiting(transport: asyncio.Transport) -> bool:
    """Whether anything waits to be sent to the client: in the proxy's buffer, or in the
    kernel's send queue unacknowledged (Linux's SIOCOUTQ)."""
    if transport.get_write_buffer_size():
        return True
    sock = transport.get_extra_info("socket")
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError):
        return False
    return bool(struct.unpack("i", queued)[0])


class Listener:
    """One environment's listening socket and its client connections."""

    def __init__(
        self,
        handle: Callable[[Request], Awaitable[None]],
        tls: bool,
        write_stall: float = WRITE_STALL_TIMEOUT,
    ) -> None:
        self.handle = handle
        self.scheme = "https" if tls else "http"
        self.write_stall = write_stall
        #: How often connections are looked at for idleness and stalls.
        self._every = min(KEEPALIVE_TIMEOUT, write_stall) / 5
        self.connections: set[ClientConnection] = set()
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self.handle, self.scheme, self.connections),
            host,
            port,
            ssl=ssl_context,
            backlog=1024,
        )
        self._sweeper = loop.call_later(self._every, self._sweep)
        return int(self.server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            stalled = conn.stalled_for(now)
            if stalled > self.write_stall:
                _log.info("cut off a client that took nothing for %.0f s", stalled)
                conn.abort()  # its request (or WebSocket session) and the app's side end too
            elif not conn.busy and now - conn.idle_since > KEEPALIVE_TIMEOUT:
                conn.close()
        self._sweeper = loop.call_later(self._every, self._sweep)

    async def close(self, timeout: float) -> None:
        """Stop accepting, let requests still running finish for ``timeout`` seconds, then
        close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        while any(conn.busy for conn in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort() if conn.busy else conn.close()
        if self.server is not None:
            await self.server.wait_closed()
