"""Knowing a process again after a restart: records of started workers on disk, and the facts
about a pid that Linux keeps in /proc.

A pid alone does not identify a process: once it exits, the kernel may hand the same number to an
unrelated one. A pid together with its start time (clock ticks since boot, field 22 of
``/proc/<pid>/stat``) and the boot id does, so a record holds all three and a process is treated as
the recorded one only when all three still match.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import RuntimeFailure

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys" / "kernel" / "random" / "boot_id"

# Indexes into the fields of /proc/<pid>/stat that follow the ")" closing the command name,
# so that index 0 is field 3 of proc(5).
_STATE = 0
_PGRP = 2
_SESSION = 3
_START_TIME = 19


def require_proc() -> None:
    """Fail clearly where the Linux /proc filesystem is missing: the supervisor cannot tell its
    processes apart from unrelated ones without it."""
    if not (_PROC / "self" / "stat").is_file():
        raise RuntimeFailure(
            "the process supervisor needs the Linux /proc filesystem, which is not mounted here"
        )


def boot_id() -> str:
    """The kernel's id of the current boot; start times only compare within one boot."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may itself contain spaces and parentheses.
    return text[text.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot, or None when there is no such pid."""
    fields = _stat_fields(pid)
    return int(fields[_START_TIME]) if fields is not None else None


def is_alive(pid: int) -> bool:
    """Whether the pid is a running process (an exited, unreaped zombie does not count)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[_STATE] != "Z"


def group_members(pgid: int) -> list[int]:
    """The live processes in process group ``pgid``."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[_STATE] != "Z" and int(fields[_PGRP]) == pgid:
            members.append(int(entry.name))
    return sorted(members)


def session_of(pid: int) -> int | None:
    """The session id of the process, or None when there is no such pid."""
    fields = _stat_fields(pid)
    return int(fields[_SESSION]) if fields is not None else None


@dataclass(frozen=True)
class ProcessRecord:
    """One started worker process, as written to disk so that a later server can find it."""

    release_id: int
    worker: int
    pid: int
    pgid: int
    start_time: int
    boot_id: str
    argv: tuple[str, ...]
    port: int

    def matches_live_process(self) -> bool:
        """Whether ``pid`` is still this very process: same boot, same start time, not exited."""
        return (
            self.boot_id == boot_id()
            and process_start_time(self.pid) == self.start_time
            and is_alive(self.pid)
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "argv": list(self.argv)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            release_id=int(data["release_id"]),
            worker=int(data["worker"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            start_time=int(data["start_time"]),
            boot_id=str(data["boot_id"]),
            argv=tuple(str(arg) for arg in data["argv"]),
            port=int(data["port"]),
        )


class ProcessRecords:
    """The directory of process records: ``<release_id>-<worker>.json``, each written atomically
    so that a server killed mid-write leaves either the old record or the new one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, release_id: int, worker: int) -> Path:
        return self.directory / f"{release_id}-{worker}.json"

    def write(self, record: ProcessRecord) -> None:
        target = self.path(record.release_id, record.worker)
        descriptor, temporary = tempfile.mkstemp(
            dir=self.directory, prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(record.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def remove(self, release_id: int, worker: int) -> None:
        self.path(release_id, worker).unlink(missing_ok=True)

    def load_all(self) -> list[tuple[Path, ProcessRecord | None]]:
        """Every record file with its record, or None for a file that cannot be read as one."""
        loaded: list[tuple[Path, ProcessRecord | None]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                loaded.append((path, ProcessRecord.from_json(path.read_text(encoding="utf-8"))))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                loaded.append((path, None))
        return loaded

    def temporary_files(self) -> list[Path]:
        """Half-written records left by a server killed while writing one."""
        return sorted(self.directory.glob(".*.tmp"))
