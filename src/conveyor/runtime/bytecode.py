"""Bytecode shared between runtimes: each installed source file is compiled once per
interpreter, and every runtime that has the same file gets the compiled file as a hard link.

uv installs a package by hard-linking the files of its cache into the runtime, so the
`pandas/core/frame.py` of two runtimes is one file (one inode) with two names. Its compiled
form, `__pycache__/frame.cpython-311.pyc`, is the same for both: a timestamp-checked .pyc
records the source's size and modification time, which a hard link shares, and Python sets a
code object's file name from where the source is found, not from where it was compiled. So
the first runtime compiles it, the store keeps a link to the result, keyed by the source's
inode, size and modification time, and the next runtime only links it into its own
`__pycache__`. A runtime that differs from another by one package compiles that package only.

Files that are not hard links (a copy uv made across file systems, the venv's own files,
Conveyor's library) are compiled in every runtime, as before.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Filled:
    """What filling a runtime's bytecode took: files linked from the store, files compiled."""

    linked: int
    compiled: int


class BytecodeStore:
    """``root/<cache tag>/<device>/<key>.pyc``: one name for each compiled file runtimes
    share (the runtimes hold the others)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def fill(
        self,
        directories: Iterable[Path],
        tag: str,
        compile_files: Callable[[list[Path]], None],
    ) -> Filled:
        """Give every .py file under ``directories`` its ``.<tag>.pyc``: linked from the store
        where one was compiled for the same file before, else compiled by
        ``compile_files(paths)`` (the runtime's own Python) and then kept in the store."""
        missing: list[Path] = []
        shared: list[tuple[Path, Path]] = []  # (compiled file in the runtime, store entry)
        linked = 0
        for source in _sources(directories):
            compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
            entry = self._entry(source, tag)
            if entry is None:
                missing.append(source)
                continue
            try:
                compiled.parent.mkdir(exist_ok=True)
                os.link(entry, compiled)
                linked += 1
            except FileNotFoundError:
                missing.append(source)
                shared.append((compiled, entry))
            except FileExistsError:
                linked += 1
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                missing.append(source)  # the store is on another file system: no sharing
        if missing:
            compile_files(missing)
        for compiled, entry in shared:
            if not compiled.is_file():
                continue  # a file that does not compile (a template, a Python 2 leftover)
            entry.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(compiled, entry)
            except FileExistsError:
                pass  # another build kept the same file meanwhile
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
        return Filled(linked=linked, compiled=len(missing))

    def _entry(self, source: Path, tag: str) -> Path | None:
        """Where the store keeps ``source``'s compiled file; None for a source no other
        runtime shares (not a hard link)."""
        found = os.lstat(source)
        if not stat.S_ISREG(found.st_mode) or found.st_nlink < 2:
            return None
        key = f"{found.st_ino:x}-{found.st_size:x}-{found.st_mtime_ns:x}"
        return self.root / tag / f"{found.st_dev:x}" / key[:2] / f"{key}.pyc"

    def unused(self, once_removed: Iterable[Path] = ()) -> list[tuple[Path, int]]:
        """Compiled files (with their sizes) no runtime links any more, the store holding
        their only name, or none but runtimes under the directories ``once_removed``."""
        if not self.root.is_dir():
            return []
        links_going: dict[tuple[int, int], int] = {}
        for runtime in once_removed:
            for directory, _, files in os.walk(runtime):
                if os.path.basename(directory) != "__pycache__":
                    continue
                for name in files:
                    try:
                        info = os.lstat(os.path.join(directory, name))
                    except OSError:
                        continue
                    if info.st_nlink > 1:
                        key = (info.st_dev, info.st_ino)
                        links_going[key] = links_going.get(key, 0) + 1
        found = []
        for path in self.root.rglob("*.pyc"):
            try:
                info = os.lstat(path)
            except OSError:
                continue  # removed meanwhile (another server's gc)
            other_links = info.st_nlink - 1
            if stat.S_ISREG(info.st_mode) and other_links <= links_going.get(
                (info.st_dev, info.st_ino), 0
            ):
                found.append((path, info.st_size))
        return sorted(found)

    def remove_unused(self) -> None:
        """Remove the compiled files no runtime links now. A runtime being built that links
        one just before it goes keeps its own link; one that finds it gone compiles it."""
        for path, _ in self.unused():
            try:
                if os.lstat(path).st_nlink < 2:
                    path.unlink()
            except FileNotFoundError:
                continue


def _sources(directories: Iterable[Path]) -> Iterable[Path]:
    for root in directories:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    yield Path(directory) / name
