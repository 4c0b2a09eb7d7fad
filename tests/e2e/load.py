"""A bounded load generator for end-to-end tests: concurrent clients requesting one URL until
told to stop, counting answers by body and every failure."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import aiohttp


class Load:
    def __init__(self, url: str, clients: int = 8, max_seconds: float = 300) -> None:
        self.url = url
        self.clients = clients
        self.max_seconds = max_seconds
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    async def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def client() -> None:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        async with session.get(self.url) as response:
                            body = await response.text()
                            if response.status == 200:
                                self.answers[body.strip()] += 1
                            else:
                                self.failures.append(f"HTTP {response.status}: {body[:200]}")
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self.failures.append(repr(exc))

            await asyncio.gather(*(client() for _ in range(self.clients)))
