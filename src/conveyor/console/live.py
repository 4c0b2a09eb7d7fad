"""The console's live pages: server-sent events, and the loop that keeps a stream going only
while its browser is there, its session holds and its route's permission still does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from conveyor.domain.access import User
from conveyor.errors import ConveyorError

#: Seconds between looks for what changed, for live pages.
EVERY = 1.5

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
