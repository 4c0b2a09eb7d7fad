"""The files the local runtime leaves on disk, as retention sees them: the runtimes built under
``runtimes/`` (runtime/builds.py) and how much space a tree would free, and removing a runtime
the way a build would not trip over."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from conveyor.runtime.builds import MARKER, RETIRED_PREFIX, RUNTIME_ID
from conveyor.runtime.read_only_trees import remove_tree


@dataclass(frozen=True)
class Installed:
    name: str  # the directory's name: a runtime id, or .retired-<id>-... for a replaced one
    path: Path
    #: sha256 of the lock it was built from (its marker); None for a replaced runtime
    lock_sha256: str | None


def installed_runtimes(root: Path) -> list[Installed]:
    """Complete runtimes (those with a marker) and replaced ones; builds under way and
    incomplete directories are the builder's to clear."""
    found: list[Installed] = []
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(RETIRED_PREFIX) and entry.is_dir():
            found.append(Installed(entry.name, entry, None))
            continue
        if not RUNTIME_ID.match(entry.name) or not (entry / MARKER).is_file():
            continue
        try:
            marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
            lock = str(marker["lock_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            lock = ""  # unreadable marker: no kept bundle matches it, yet it is no rebuild
        found.append(Installed(entry.name, entry, lock))
    return found


def remove_runtime(root: Path, name: str) -> None:
    """Remove a runtime under the same file lock its builds take (runtime/builds.py), after
    renaming it aside in one step: a build sees a complete runtime or none."""
    if not (RUNTIME_ID.match(name) or name.startswith(RETIRED_PREFIX)) or "/" in name:
        raise ValueError(f"{name!r} is not a runtime directory")
    path = root / name
    if name.startswith(RETIRED_PREFIX):
        remove_tree(path)
        return
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            aside = root / f".removing-{name[:16]}-{secrets.token_hex(4)}"
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                return
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    remove_tree(aside)


def freed_by(root: Path) -> int:
    """The bytes removing ``root`` frees: its regular files that have no other link (a
    runtime's installed files are hard links into uv's cache, which keeps them)."""
    if root.is_symlink() or not root.exists():
        return 0
    if not root.is_dir():
        info = root.lstat()
        return info.st_size if info.st_nlink == 1 else 0
    size = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                size += info.st_size
    return size
