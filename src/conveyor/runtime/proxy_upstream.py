"""The app side of the proxy: keep-alive connections to the workers, pooled per address, each
an asyncio Protocol with an ``httptools`` response parser.

One exchange at a time per connection: ``begin`` writes the request head (the body follows
through ``send``), ``head`` waits for the response's head. Body bytes that arrive with the
head wait in ``pending``, so the proxy sends the client the head and the first bytes of the
body in one write; once ``stream_to`` links the connection to the client, the body goes
straight to the client's socket and the client's write buffer filling up pauses reading here.

Internal to ``conveyor.runtime.proxy``; runs only on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from typing import Any, cast

import httptools

from conveyor.runtime.proxy_http import LAST_CHUNK, Header, chunk
from conveyor.runtime.proxy_server import WRITE_HIGH, WRITE_LOW, ClientConnection

#: Below the idle timeout of the app servers Conveyor runs (uvicorn 5 s), so the pool drops a
#: connection before the app closes it under a request in flight.
UPSTREAM_KEEPALIVE = 2.0
CONNECT_TIMEOUT = 10.0
#: Generous: apps (and their cookies) are trusted more than an arbitrary client.
UPSTREAM_LINE_LIMIT = 64 * 1024
_UPSTREAM_HEAD_LIMIT = 8 * UPSTREAM_LINE_LIMIT
#: Response body buffered before the client takes it: beyond this, reading pauses.
_PENDING_LIMIT = 256 * 1024


class UpstreamGone(Exception):
    """The app's connection ended before the response's head (``answered``: some of it came)."""

    def __init__(self, answered: bool) -> None:
        super().__init__("the app closed the connection")
        self.answered = answered


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a worker."""

    def __init__(self, key: tuple[str, int, bool]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.parser: Any = None
        #: After a WebSocket handshake: whose bytes this connection now carries.
        self.tunnel: Any = None
        #: The client connection flow control links this one to (while streaming).
        self.peer: ClientConnection | None = None
        self.sink: ClientConnection | None = None
        self._head: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = b""
        self.items: list[Header] = []
        self.keep_alive = False
        self.until_close = False
        self.content_length = False
        #: The response's Content-Length as parsed (None: none), which the proxy writes itself.
        self.length: int | None = None
        self.chunked_out = False
        self.pending: list[bytes] = []
        self.complete = False
        self.broken = False
        self.upgrade: bytes | None = None
        self._pending_size = 0
        #: Reading stopped because the body waiting for the client passed _PENDING_LIMIT.
        self._paused_for_pending = False
        self._head_size = 0
        self._received = False
        self._interim = False
        self._head_request = False
        self._error: str | None = None

    # --- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.upstream_lost()
            return
        head = self._head
        if head is not None and not head.done():
            head.set_exception(UpstreamGone(self._received))
            return
        if self.complete:
            return
        if self.until_close and self._error is None:
            self._on_complete()  # a body delimited by the connection's end: whole
            return
        self.broken = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_upstream(data)
            return
        if self.parser is None or self.complete:
            # Bytes past the end of the response (or with nothing asked): the app talks out of
            # turn, and whatever it sends would be taken for the next request's answer. The
            # connection is broken: never pooled, closed.
            self._error = "bytes after the response"
            self.close()
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade = data[upgrade.args[0] :]
            assert self.transport is not None
            self.transport.pause_reading()
        except httptools.HttpParserError as error:
            self._error = str(error)
        if self._error is not None:
            self.close()
            return
        if self._head_size > 2 * _UPSTREAM_HEAD_LIMIT and not self.head_ready:
            self._error = "response head too large"
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _refuse(self, error: str) -> None:
        """Stop the parser at once: the connection closes (``data_received``), the exchange
        fails if it is still going on, and the connection is never pooled."""
        self._error = error
        raise ValueError(error)

    # --- flow control --------------------------------------------------------------------

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause("upstream")

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume("upstream")

    def send(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    # --- one exchange --------------------------------------------------------------------

    def begin(self, head: bytes, *, head_request: bool) -> None:
        """Send a request's head; its body (if any) follows through ``send``."""
        loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        self._head = loop.create_future()
        self.done = loop.create_future()
        self.items = []
        self.pending = []
        self._pending_size = self._head_size = 0
        self._paused_for_pending = False
        self.complete = self.broken = self._received = self.until_close = False
        self.status, self.reason, self.keep_alive = 0, b"", False
        self.content_length, self.length, self.upgrade = False, None, None
        self._interim = False
        self._error = None
        self._head_request = head_request
        self.sink = None
        assert self.transport is not None
        self.transport.write(head)

    @property
    def head_ready(self) -> bool:
        return self._head is not None and self._head.done()

    async def head(self) -> None:
        """Wait for the response's head (UpstreamGone when the connection ends first)."""
        assert self._head is not None
        await self._head

    def stream_to(self, client: ClientConnection, *, chunked: bool) -> None:
        """From now on, body bytes go straight to ``client`` (``chunked``: re-framed)."""
        self.chunked_out = chunked
        self.sink = client
        self.peer = client
        client.peer = self.transport
        paused_for_pending, self._paused_for_pending = self._paused_for_pending, False
        if self.transport is None:
            return
        if client.writing_paused:
            # The head and first bytes already filled the client's connection (its
            # pause_writing came before this link, and comes only once): hold the app back
            # until the client drains, which resumes reading here (resume_writing).
            self.transport.pause_reading()
        elif paused_for_pending:
            # Read again: what comes now goes to the client (whose own flow control pauses
            # this connection when it cannot keep up).
            self.transport.resume_reading()

    def take_pending(self) -> bytes:
        data = b"".join(self.pending)
        self.pending = []
        self._pending_size = 0
        return data

    def unlink(self, client: ClientConnection) -> None:
        """End the flow-control link with ``client``, leaving both sides reading."""
        self.sink = self.peer = None
        if client.peer is self.transport:
            client.peer = None
        client.resume("upstream")

    # --- httptools' callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        # One response per exchange (after interim ones): a second one in the same bytes is
        # the app answering out of turn (a 204 or a HEAD answer with a body, say).
        if self.complete:
            self._refuse("a second response in one exchange")
        self.items = []
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason = status
        self._head_size += len(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.items.append((name, value))
        self._head_size += len(name) + len(value)
        if len(name) + len(value) > UPSTREAM_LINE_LIMIT:
            self._error = "response header too large"

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim answers (100 Continue, 103 Early Hints) are not passed on.
            self._interim = True
            self.items = []
            return
        if self._head_size > _UPSTREAM_HEAD_LIMIT:
            self._error = "response head too large"
        if self._error is not None:
            return  # the connection closes: the request fails as an unreachable app
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        length = chunked = False
        for name, value in self.items:
            lower = name.lower()
            if lower == b"content-length":
                length = True
                self.length = int(value.strip())  # digits only: llhttp checked
            elif lower == b"transfer-encoding":
                chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        framed = length or chunked
        #: The body's length is known (and kept): it is passed on as it comes, not re-framed.
        self.content_length = length and not chunked
        no_body = self._head_request or status in (101, 204, 304)
        self.until_close = not framed and not no_body
        if self.until_close or no_body:
            # A body-less answer is not pooled either: an app that sends a body anyway (to a
            # HEAD, after a 204 or a 304), even a moment later, would have those bytes taken
            # for the next request's answer, another client's maybe.
            self.keep_alive = False
        assert self._head is not None
        if not self._head.done():
            self._head.set_result(None)
        if self._head_request:
            # llhttp would wait for the Content-Length of a HEAD answer's body: none comes.
            self.parser = None
            self._on_complete()

    def on_body(self, data: bytes) -> None:
        if self.complete:
            self._refuse("a body after the response's end")  # a HEAD answer with a body
        sink = self.sink
        if sink is not None:
            sink.write(chunk(data) if self.chunked_out else data)
            return
        if data:
            self.pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > _PENDING_LIMIT and self.transport is not None:
                self._paused_for_pending = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._on_complete()

    def _on_complete(self) -> None:
        if self.complete:
            return
        self.complete = True
        if self.sink is not None and self.chunked_out:
            self.sink.write(LAST_CHUNK)
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class Pool:
    """Keep-alive connections to the workers, idle ones kept ``UPSTREAM_KEEPALIVE`` seconds."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, bool], list[UpstreamConnection]] = {}
        self._addresses: dict[str, tuple[tuple[str, int, bool], bytes]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._tls: ssl.SSLContext | None = None

    def address(self, base_url: str) -> tuple[tuple[str, int, bool], bytes]:
        """A worker's (host, port, TLS) and its Host header value, from its base URL."""
        known = self._addresses.get(base_url)
        if known is None:
            parts = urllib.parse.urlsplit(base_url)
            tls = parts.scheme == "https"
            host = parts.hostname or "127.0.0.1"
            known = ((host, parts.port or (443 if tls else 80), tls), parts.netloc.encode())
            self._addresses[base_url] = known
        return known

    async def connect(self, base_url: str) -> tuple[UpstreamConnection, bool]:
        """A connection to the worker at ``base_url``, and whether it is a pooled one (which
        the app may have closed meanwhile). Raises OSError (refused, unreachable) or
        TimeoutError."""
        key = self.address(base_url)[0]
        idle = self._idle.get(key)
        loop = asyncio.get_running_loop()
        if idle:
            now = loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < UPSTREAM_KEEPALIVE:
                    return conn, True
                conn.close()
        host, port, tls = key
        context = None
        if tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            context = self._tls
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, protocol = await loop.create_connection(
                lambda: UpstreamConnection(key), host, port, ssl=context
            )
        return protocol, False

    def release(self, conn: UpstreamConnection) -> None:
        """Keep ``conn`` for the next request, or close it if it cannot take one."""
        if conn.closed or not conn.complete or not conn.keep_alive or conn.tunnel is not None:
            conn.close()
            return
        conn.peer = conn.sink = None
        conn.parser = None
        assert conn.transport is not None
        # The client may have paused it just as the last bytes came: the next answer is read.
        conn.transport.resume_reading()
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(UPSTREAM_KEEPALIVE, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for key, idle in list(self._idle.items()):
            kept = [c for c in idle if not c.closed and now - c.idle_since < UPSTREAM_KEEPALIVE]
            for conn in idle:
                if conn not in kept:
                    conn.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        self._sweeper = loop.call_later(UPSTREAM_KEEPALIVE, self._sweep) if self._idle else None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
