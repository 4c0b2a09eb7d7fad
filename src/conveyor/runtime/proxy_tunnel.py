"""WebSockets through the proxy: after the app's 101, the two connections carry each other's
bytes, and the proxy reads only the frames' headers.

Frames from the client are masked; the proxy does not unmask them, it sums their lengths per
message (fragments included) and closes the session with 1009 before forwarding a frame that
takes a message past the limit. It checks each frame's header too, and closes the session
with 1002 (protocol error) before forwarding an unmasked frame, one with RSV bits (no
extension is negotiated through the proxy), a reserved opcode, or a control frame that is
fragmented or over 125 bytes. Frames from the app are unmasked; close frames are rewritten
when their code must not go on the wire (no code and 1005 become 1000, 1006 and 1015 become
1011). Since the proxy always knows where the app's current frame ends, it can put a close
frame of its own between two frames (1012 when a drain ends the session, 1001 when the proxy
stops); nothing from the app follows a close frame to the client.

Internal to ``conveyor.runtime.proxy``; runs only on the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from conveyor.runtime.proxy_server import ClientConnection
from conveyor.runtime.proxy_upstream import UpstreamConnection

#: Close codes a peer must not send on the wire (RFC 6455 7.4.1), and what is sent instead;
#: 0 stands for a close frame without a code.
_RESERVED_CLOSE_CODES = {0: 1000, 1005: 1000, 1006: 1011, 1015: 1011}
_ABNORMAL_CLOSURE = 1006
_MESSAGE_TOO_BIG = 1009
_PROTOCOL_ERROR = 1002
_RESERVED_OPCODES = frozenset({3, 4, 5, 6, 7, 11, 12, 13, 14, 15})
#: How long a closing session waits for the other side's close before it is cut.
CLOSE_TIMEOUT = 5.0


def _client_frame_invalid(first: int, second: int, opcode: int, length: int) -> bool:
    """Whether a client's frame breaks RFC 6455 5.2-5.5: unmasked, RSV bits set (the proxy
    lets no extension be negotiated), a reserved opcode, a control frame fragmented or over
    125 bytes."""
    if not second & 0x80 or first & 0x70 or opcode in _RESERVED_OPCODES:
        return True
    return opcode >= 8 and (length > 125 or not first & 0x80)


def wire_close_code(code: int | None) -> int:
    """The close code to relay for ``code`` received on the other side of the proxy."""
    if code is None:
        return _RESERVED_CLOSE_CODES[_ABNORMAL_CLOSURE]
    return _RESERVED_CLOSE_CODES.get(code, code)


def frame_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(header length, opcode, payload length) of the frame at ``pos``; None while the header
    is not all there. The FIN bit is read by the caller (``data[pos] & 0x80``)."""
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if available < size:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        size = 10
        if available < size:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    if second & 0x80:
        size += 4
    if available < size:
        return None
    return size, data[pos] & 0x0F, length


def close_frame(code: int, reason: bytes, *, masked: bool = False) -> bytes:
    """A close frame (``masked``: as a client sends it)."""
    payload = code.to_bytes(2, "big") + reason[:123]
    if not masked:
        return bytes((0x88, len(payload))) + payload
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x88, 0x80 | len(payload))) + mask + body


class Tunnel:
    """One WebSocket session between a client and an app, after the handshake."""

    def __init__(
        self,
        client: ClientConnection,
        upstream: UpstreamConnection,
        limit: int,
        sessions: set[Any],  # the release's WebSocket sessions
        on_end: Callable[[], None],
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.limit = limit
        self._sessions = sessions
        self._on_end = on_end
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # From the client: bytes of a header not all there, payload left in the current
        # frame, the current message's size, whether it sent a close, whether the proxy
        # stopped forwarding (a message too big).
        self._c_partial = b""
        self._c_remaining = 0
        self._c_message = 0
        self._c_closed = False
        self._c_dropping = False
        # From the app: the same, and the close frame the proxy waits to put between frames.
        self._u_partial = b""
        self._u_remaining = 0
        self._u_close_sent = False
        self._u_pending_close: bytes | None = None
        self._timer: asyncio.TimerHandle | None = None
        sessions.add(self)
        client.tunnel = self
        upstream.tunnel = self
        # Each side's write buffer filling up pauses reading on the other.
        client.peer = upstream.transport
        upstream.peer = client

    def start(self, from_client: bytes, from_upstream: bytes) -> None:
        """Relay what each side sent after the handshake, then everything else."""
        if from_upstream:
            self.from_upstream(from_upstream)
        if from_client:
            self.from_client(from_client)
        if self.upstream.transport is not None and not self.upstream.closed:
            # Unless the 101 and the app's first frames already filled the client's connection:
            # then the app is read once it drains (the client's resume_writing).
            if not self.client.writing_paused:
                self.upstream.transport.resume_reading()
        self.client.resume("upgrade")

    async def close(self, code: int, reason: bytes) -> None:
        """Close the session toward the client with ``code`` (the client's answer goes on to
        the app, which closes its side); cut both connections if that takes too long."""
        self._close_client(close_frame(code, reason))
        self._cut_later()
        await asyncio.shield(self.done)

    # --- client to app -------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._c_dropping:
            return
        if self._c_partial:
            data = self._c_partial + data
            self._c_partial = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._c_remaining:
                take = min(self._c_remaining, end - pos)
                self._c_remaining -= take
                pos += take
                continue
            header = frame_header(data, pos)
            if header is None:
                self._c_partial = data[pos:]
                break
            size, opcode, length = header
            if _client_frame_invalid(data[pos], data[pos + 1], opcode, length):
                self.upstream.send(data[:pos])
                self._refuse(_PROTOCOL_ERROR, b"protocol error")
                return
            if opcode < 8:
                message = length if opcode else self._c_message + length
                if message > self.limit:
                    self.upstream.send(data[:pos])
                    self._refuse(_MESSAGE_TOO_BIG, b"message too big")
                    return
                self._c_message = 0 if data[pos] & 0x80 else message
            elif opcode == 8:
                self._c_closed = True
            self._c_remaining = length
            pos += size
        self.upstream.send(data[:pos] if self._c_partial else data)

    def _refuse(self, code: int, reason: bytes) -> None:
        """Stop forwarding the client's frames: both sides get a close frame with ``code``,
        and both connections are cut if the closing handshake takes too long."""
        self._c_dropping = True
        self.upstream.send(close_frame(code, reason, masked=True))
        self._close_client(close_frame(code, reason))
        self._cut_later()

    # --- app to client -------------------------------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        if self._u_close_sent:
            return  # nothing follows a close frame
        if self._u_partial:
            data = self._u_partial + data
            self._u_partial = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._u_remaining:
                take = min(self._u_remaining, end - pos)
                self._u_remaining -= take
                pos += take
                continue
            if self._u_pending_close is not None:
                self.client.write(data[:pos])
                self._send_close(self._u_pending_close)
                return
            header = frame_header(data, pos)
            if header is None:
                self._u_partial = data[pos:]
                break
            size, opcode, length = header
            if opcode == 8:
                if end - pos < size + length:
                    self._u_partial = data[pos:]
                    break
                payload = data[pos + size : pos + size + length]
                if data[pos + 1] & 0x80:  # an app must not mask its frames; read it anyway
                    key = data[pos + size - 4 : pos + size]
                    payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                self.client.write(data[:pos])
                self._send_close(close_frame(wire_close_code(code), payload[2:]))
                return
            self._u_remaining = length
            pos += size
        self.client.write(data[:pos] if self._u_partial else data)
        if self._u_pending_close is not None and self._at_upstream_boundary:
            self._send_close(self._u_pending_close)

    @property
    def _at_upstream_boundary(self) -> bool:
        return not self._u_remaining and not self._u_partial

    def _close_client(self, frame: bytes) -> None:
        """Send the client a close frame of the proxy's, between two of the app's frames."""
        if self._u_close_sent:
            return
        if self._at_upstream_boundary:
            self._send_close(frame)
        else:
            self._u_pending_close = frame

    def _send_close(self, frame: bytes) -> None:
        self.client.write(frame)
        self._u_close_sent = True
        self._u_pending_close = None

    # --- the end -------------------------------------------------------------------------

    def client_lost(self) -> None:
        if not self._c_closed and not self._c_dropping and not self._c_remaining:
            # The client vanished without a close frame: abnormal, as the app is told.
            self.upstream.send(close_frame(wire_close_code(None), b"", masked=True))
        self.upstream.close()
        self._finish()

    def upstream_lost(self) -> None:
        if not self._u_close_sent and self._at_upstream_boundary:
            # The app vanished without a close frame: abnormal (1006), sent as 1011.
            self._send_close(close_frame(wire_close_code(None), b""))
        self.client.close()
        self._finish()

    def _cut_later(self) -> None:
        if self._timer is None and not self.done.done():
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._cut)

    def _cut(self) -> None:
        self.client.abort()
        self.upstream.close()
        self._finish()

    def _finish(self) -> None:
        if self.done.done():
            return
        if self._timer is not None:
            self._timer.cancel()
        self._sessions.discard(self)
        self.done.set_result(None)
        self._on_end()
