"""A release's log: one file its workers' output and the supervisor's notices are appended to,
rotated by size, and read by offset so that a reader following it sees each line once.

The supervisor (``conveyor.runtime.supervisor``) keeps one per release. Its workers' output
reaches it through ``pump_output``, one thread per worker process reading the pipe that process
writes to; the supervisor's own notices are written into it directly. ``Supervisor.read_log``
reads it for the API's log endpoint and the console's release page.
"""

from __future__ import annotations

import io
import os
import select
import threading
import time
from pathlib import Path

from conveyor.errors import InvalidInput

# How long a pump thread idles between looks at whether it should give up on its pipe.
_PUMP_POLL_MS = 500
# After the workers are gone, how long a pump may keep draining a pipe that some escaped
# process still holds open.
_PUMP_DRAIN = 1.0
# A line longer than this is written in pieces, so that one process cannot make the
# supervisor buffer without bound.
_MAX_LINE = 64 * 1024
_READ_SIZE = 64 * 1024


class ReleaseLog:
    """One release's log file, rotated by size: ``<id>.log``, then ``<id>.log.1`` (newest) up to
    ``<id>.log.<backups>``. Written by several threads; a rotation never splits a line.

    Offsets handed to readers count every byte written through this object across rotations,
    so a reader following the log sees each line once even when the file is rotated between
    two reads (as long as it reads before the rotated bytes fall off the last backup)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        self._handle: io.BufferedWriter | None = None
        self._size = path.stat().st_size if path.exists() else 0
        self._start = 0  # offset of the current file's first byte
        self._kept: list[tuple[int, int]] = []  # (offset, size) of .1, .2, ... written here

    def write(self, data: bytes) -> None:
        """Append whole lines (``data`` ends with a newline)."""
        with self._lock:
            handle = self._open()
            for line in data.splitlines(keepends=True):
                if self._size > 0 and self._size + len(line) > self._max_bytes:
                    self._rotate()
                    handle = self._open()
                handle.write(line)
                self._size += len(line)
            handle.flush()

    def read(self, after: int) -> tuple[int, str]:
        """Everything written after offset ``after``, and the offset to read from next."""
        if after < 0:
            raise InvalidInput(f"a log offset cannot be negative (got {after})")
        with self._lock:
            end = self._start + self._size
            if after == end:
                return end, ""
            if after > end:
                # An offset from an earlier log (before a server restart): start afresh.
                after = self._start
            segments = [
                (self._backup(number), offset, size)
                for number, (offset, size) in reversed(list(enumerate(self._kept, start=1)))
            ]
            segments.append((self.path, self._start, self._size))
            chunks = []
            for path, offset, size in segments:
                if offset + size <= after:
                    continue
                skip = max(0, after - offset)
                try:
                    with path.open("rb") as source:
                        source.seek(skip)
                        chunks.append(source.read(size - skip))
                except FileNotFoundError:
                    continue
            return end, b"".join(chunks).decode("utf-8", errors="replace")

    def tail(self, size: int = 8192) -> str:
        """About the last ``size`` bytes written."""
        with self._lock:
            end = self._start + self._size
        return self.read(max(0, end - size))[1]

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _open(self) -> io.BufferedWriter:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
            self._size = self._handle.tell()
        return self._handle

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _rotate(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._backups > 0:
            for number in range(self._backups - 1, 0, -1):
                if self._backup(number).exists():
                    os.replace(self._backup(number), self._backup(number + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self._kept.insert(0, (self._start, self._size))
        del self._kept[self._backups :]
        self._start += self._size
        self._size = 0


def pump_output(read_end: int, log: ReleaseLog, done: threading.Event) -> None:
    """Copy one process's output from the pipe ``read_end`` into ``log``, whole lines at a time,
    until the pipe ends; once ``done`` is set (the release's workers are gone), only until the
    pipe is quiet or ``_PUMP_DRAIN`` seconds have passed. Closes ``read_end``."""
    pending = b""
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    drain_until: float | None = None
    try:
        while True:
            if done.is_set():
                if drain_until is None:
                    drain_until = time.monotonic() + _PUMP_DRAIN
                elif time.monotonic() > drain_until:
                    break
            if not poller.poll(_PUMP_POLL_MS):
                if done.is_set():
                    break
                continue
            chunk = os.read(read_end, _READ_SIZE)
            if not chunk:
                break
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                log.write(pending[:cut])
                pending = pending[cut:]
            if len(pending) >= _MAX_LINE:
                log.write(pending + b"\n")
                pending = b""
    finally:
        if pending:
            log.write(pending + b"\n")
        os.close(read_end)


#: How the supervisor's own lines in a release's log begin.
NOTICE_PREFIX = "[conveyor] "


def notice_line(message: str) -> bytes:
    """One of the supervisor's own lines for a release's log: a crash, a restart, giving up."""
    return f"{NOTICE_PREFIX}{message}\n".encode()
