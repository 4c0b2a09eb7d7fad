"""The console's live pages: server-sent events, and the loop that keeps a stream going only
while its browser is there, its session holds and its route's permission still does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from conveyor.api.limits import MAX_ID
from conveyor.domain.access import User
from conveyor.errors import ConveyorError, InvalidInput

#: Seconds between looks for what changed, for live pages.
EVERY = 1.5

#: A log page shows this many of the last lines (and follows new ones); the whole log is a
#: link away, as text read a page at a time.
SHOWN_LINES = 1000

#: A live stream ends after this long; the browser's EventSource connects again (and is
#: checked again), so no stream outlives its reason to exist by much.
STREAM_SECONDS = 600.0


async def while_allowed(request: Request, every: float = EVERY) -> AsyncIterator[User]:
    """Yield the user, again every ``every`` seconds, while the browser is there, for at most
    ``STREAM_SECONDS``, and while the session and the route's permission still hold."""
    deadline = asyncio.get_running_loop().time() + STREAM_SECONDS
    first = True
    while asyncio.get_running_loop().time() < deadline:
        if not first:
            await asyncio.sleep(every)
        first = False
        if await request.is_disconnected():
            return
        try:
            user, _, _ = await run_in_threadpool(request.state.recheck)
        except ConveyorError:
            return
        yield user


def event(name: str, data: str, event_id: int | None = None) -> str:
    """One server-sent event. Its data is split on every line break a browser splits on
    (CR, LF, CRLF), so text inside it cannot end it and start an event of its own."""
    body = "".join(f"data: {line}\n" for line in re.split(r"\r\n|\r|\n", data))
    prefix = f"id: {event_id}\n" if event_id is not None else ""
    return f"{prefix}event: {name}\n{body}\n"


def resumed_after(request: Request, after: int) -> int:
    """Where a stream goes on from: after line ``after`` (what the page showed), or further
    when a reconnecting browser says it saw more (its Last-Event-ID, a line id the stream
    sent). Any other Last-Event-ID is refused (InvalidInput) like an ``after`` out of bounds:
    never a number too long to read or too large for the database."""
    resumed = request.headers.get("last-event-id", "")
    if not resumed:
        return after
    if not (resumed.isascii() and resumed.isdigit() and len(resumed) <= len(str(MAX_ID))):
        raise InvalidInput(f"Last-Event-ID: {resumed[:40]!r} is not a line id of this stream")
    line_id = int(resumed)
    if line_id > MAX_ID:
        raise InvalidInput(f"Last-Event-ID: {line_id} is not a line id of this stream")
    return max(after, line_id)


#: What ``follow_log`` looks at: the lines after a line id, and how the log's work ended
#: ("failed: why"; None while it runs); None when the log is no longer there.
Look = Callable[[int], tuple[list[tuple[int, Any, str]], str | None] | None]


async def follow_log(request: Request, after: int, look: Look) -> AsyncIterator[str]:
    """A log's events from after line ``after``: each new line as it comes, then how its work
    ended. ``look`` runs in a thread, every half second, while the stream is allowed."""
    seen = after
    async for _ in while_allowed(request, every=0.5):
        looked = await run_in_threadpool(look, seen)
        if looked is None:
            return
        lines, ended = looked
        for line_id, _, line in lines:
            yield event("append", line, line_id)
            seen = line_id
        if ended is not None and not lines:
            yield event("state", ended)
            yield event("done", "")
            return
        yield ": still here\n\n"


def log_text(read: Callable[[int], list[tuple[int, Any, str]]]) -> Iterator[bytes]:
    """A whole log as text, one "time  line" a line: ``read(after)`` gives the lines after a
    line id a page at a time, so a log of millions of lines is never held at once."""
    after = 0
    while page := read(after):
        yield "".join(f"{at}  {line}\n" for _, at, line in page).encode()
        after = page[-1][0]
