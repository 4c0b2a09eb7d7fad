"""HTTP/1.1 as the proxy reads and writes it: a request as parsed from a client, the request
head sent to an app, the response head sent back, and the answers the proxy makes itself.

Headers stay bytes, in the order and spelling they arrived; names are compared lowercased.
Parsing itself is ``httptools`` (llhttp, in C), driven by ``proxy_server`` and
``proxy_upstream``. Internal to ``conveyor.runtime.proxy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import overload

from conveyor.runtime.proxy_gate import is_private_set_cookie, without_private_cookies

Header = tuple[bytes, bytes]

#: Headers that describe one connection, not the message (RFC 9110 7.6.1), never forwarded.
#: Proxy-Connection is not standard but old clients still send it.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Set by the proxy itself (from a trusted proxy's values, or from the connection), so a
#: client cannot pass its own through: an app taking X-Forwarded-For for the client's address
#: would believe anything.
_FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"forwarded",
        b"x-real-ip",
        b"client-ip",
        b"true-client-ip",
        b"x-client-ip",
    }
)
#: How a message's body is delimited. The proxy writes these itself, from what it parsed,
#: never the peer's: a peer's framing headers that the proxy did not act on would let the
#: next hop read the body differently (request smuggling, a response split in two).
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
#: Headers a ``Connection`` header can never make hop-by-hop (and so remove): the framing,
#: the Host, and Upgrade (which the proxy handles itself).
_UNLISTABLE = FRAMING | {b"host", b"upgrade"}
#: The proxy answers Expect itself, and writes the framing and the Host itself.
_NOT_FORWARDED = HOP_BY_HOP | FRAMING | {b"expect", b"host"}
#: The proxy offers the app no WebSocket extension: frames cross it as sent, uncompressed, so
#: it can see their boundaries and sizes.
_NOT_FORWARDED_TO_WEBSOCKET = _NOT_FORWARDED | {b"sec-websocket-extensions"}

#: What tells a CDN or another shared cache how long to keep a response: never for an app
#: whose answers are private to each viewer.
_SHARED_CACHE_CONTROL = frozenset({b"cdn-cache-control", b"surrogate-control"})

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


class Headers:
    """A message's headers as received: ``(name, value)`` byte pairs; lookups ignore case."""

    __slots__ = ("items",)

    def __init__(self, items: list[Header]) -> None:
        self.items = items

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (latin-1 text), or ``default``."""
        key = name.lower().encode()
        for header, value in self.items:
            if header.lower() == key:
                return value.decode("latin-1")
        return default

    def getall(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for h, v in self.items if h.lower() == key]


def connection_listed(items: Iterable[Header]) -> frozenset[bytes]:
    """The header names a message's Connection headers declare hop-by-hop."""
    listed: set[bytes] = set()
    for name, value in items:
        if name.lower() == b"connection":
            listed.update(token.strip().lower() for token in value.split(b","))
    return frozenset(listed - _UNLISTABLE)


def _forwarding(lower: bytes) -> bool:
    """Whether a lowercased header name, read the way servers read it (``_`` as ``-``), is one
    of the headers that say who the client is."""
    normal = lower.replace(b"_", b"-")
    return normal in _FORWARDED or normal.startswith(b"x-forwarded-")


def upstream_head(
    method: str,
    path: str,
    headers: Headers,
    *,
    remote: str | None,
    scheme: str,
    host: str,
    prefix: str,
    trusted: bool,
    length: int | None,
    chunked: bool,
    websocket: bool = False,
    upstream_host: bytes = b"",
) -> bytes:
    """The request head sent to the app: the client's end-to-end headers, Conveyor's cookies
    taken out, and X-Forwarded-* set by the proxy. The client's own forwarding headers are kept
    only from a ``trusted`` proxy in front; from anyone else they are replaced.

    The body's framing is the proxy's own: ``Content-Length: length`` (None: no such line) or
    ``chunked``, as the proxy parsed the client's body, whatever the client's headers said.
    The Host is the client's, else ``upstream_host`` (an HTTP/1.0 client may send none)."""
    skip = _NOT_FORWARDED_TO_WEBSOCKET if websocket else _NOT_FORWARDED
    listed = connection_listed(headers.items)
    lines = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1")]
    cookies: list[bytes] = []
    forwarded_for: list[bytes] = []
    proto = forwarded_host = b""
    client_host = None
    for name, value in headers.items:
        lower = name.lower()
        if lower == b"host":
            if client_host is None:
                client_host = value
            continue
        if lower in skip or lower in listed:
            continue
        if _forwarding(lower):
            if trusted:
                if lower == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif lower == b"x-forwarded-proto" and not proto:
                    proto = value
                elif lower == b"x-forwarded-host" and not forwarded_host:
                    forwarded_host = value
            continue
        if lower == b"cookie":
            cookies.append(value)
            continue
        lines.append(name + b": " + value + b"\r\n")
    host_value = client_host if client_host is not None else upstream_host
    if host_value:
        lines.insert(1, b"Host: " + host_value + b"\r\n")
    if cookies:
        # The console's session and the proxy's own cookies never reach an app.
        kept = without_private_cookies(b"; ".join(cookies).decode("latin-1"))
        if kept:
            lines.append(b"Cookie: " + kept.encode("latin-1") + b"\r\n")
    if remote:
        forwarded_for.append(remote.encode())
    if forwarded_for:
        lines.append(b"X-Forwarded-For: " + b", ".join(forwarded_for) + b"\r\n")
    lines.append(b"X-Forwarded-Proto: " + (proto or scheme.encode()) + b"\r\n")
    lines.append(b"X-Forwarded-Host: " + (forwarded_host or host.encode("latin-1")) + b"\r\n")
    lines.append(b"X-Forwarded-Prefix: " + prefix.encode() + b"\r\n")
    if websocket:
        lines.append(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
    elif chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(
    status: int,
    status_reason: bytes,
    items: list[Header],
    *,
    private: bool,
    set_cookies: Iterable[str],
    framing: bytes,
) -> bytes:
    """The response head sent to the client for an app's answer: without hop-by-hop headers
    and without Set-Cookie for Conveyor's own cookie names; ``private``: kept out of shared
    caches; then ``set_cookies`` and the ``framing`` lines (Content-Length or
    Transfer-Encoding, Connection): the app's own framing headers are never passed on."""
    listed = connection_listed(items)
    lines = [b"HTTP/1.1 %d " % status + (status_reason or reason(status)) + b"\r\n"]
    cache_control = vary = None
    for name, value in items:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in FRAMING or lower in listed:
            continue
        if lower == b"set-cookie" and is_private_set_cookie(value.decode("latin-1")):
            continue
        if private:
            if lower in _SHARED_CACHE_CONTROL:
                continue
            if lower == b"cache-control":
                if cache_control is None:
                    cache_control = value
                continue
            if lower == b"vary":
                if vary is None:
                    vary = value
                continue
        lines.append(name + b": " + value + b"\r\n")
    if private:
        # An app that needs signing in answers each viewer their own pages: no shared cache
        # may keep one for the next visitor.
        if cache_control is None or b"no-store" not in cache_control.lower():
            cache_control = b"private, no-cache"
        lines.append(b"Cache-Control: " + cache_control + b"\r\n")
        if vary is None:
            vary = b"Cookie"
        elif b"cookie" not in vary.lower():
            vary += b", Cookie"
        lines.append(b"Vary: " + vary + b"\r\n")
    for cookie in set_cookies:
        lines.append(b"Set-Cookie: " + cookie.encode("latin-1") + b"\r\n")
    lines.append(framing)
    lines.append(b"\r\n")
    return b"".join(lines)


def switching_head(items: list[Header]) -> bytes:
    """The 101 sent to a client whose WebSocket handshake the app accepted."""
    lines = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"]
    listed = connection_listed(items)
    for name, value in items:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed or lower == b"sec-websocket-extensions":
            continue
        if lower == b"set-cookie" and is_private_set_cookie(value.decode("latin-1")):
            continue
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


class Answer:
    """A whole response the proxy makes itself (its pages, redirects)."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self, status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body

    @classmethod
    def text(
        cls, status: int, text: str, content_type: str, headers: dict[str, str] | None = None
    ) -> Answer:
        items = [("Content-Type", f"{content_type}; charset=utf-8")]
        items.extend((headers or {}).items())
        return cls(status, items, text.encode())

    @classmethod
    def json(cls, status: int, data: object, headers: dict[str, str] | None = None) -> Answer:
        return cls.text(status, json.dumps(data), "application/json", headers)

    @classmethod
    def redirect(cls, status: int, location: str) -> Answer:
        return cls(status, [("Location", location)])

    def serialise(self, *, head: bool = False, close: bool = False) -> bytes:
        """The response's bytes (without the body for a HEAD request)."""
        lines = [b"HTTP/1.1 %d " % self.status + reason(self.status) + b"\r\n"]
        for name, value in self.headers:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n" % len(self.body))
        if close:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head:
            lines.append(self.body)
        return b"".join(lines)
