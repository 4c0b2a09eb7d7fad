"""Writing a file so that readers see the old content or the new, never a part: the content goes
to a temporary file beside the target, is flushed and fsynced, and is renamed over the target;
the directory is fsynced so the rename survives a crash. Used for blobs, bundle archives and
``conveyor.lock``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


class StagedFile:
    """A temporary file open for writing beside where it will go; ``commit`` puts it in place.
    Obtained from ``staged_file``, which removes it unless it was committed."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path
        self.committed = False

    def commit(self, target: Path, *, mode: int | None = None) -> None:
        """Flush, fsync and rename the file to ``target`` (replacing it), then fsync the
        directory. ``mode`` sets its permissions; None keeps the temporary file's (0600)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if mode is not None:
            os.chmod(self.path, mode)
        os.replace(self.path, target)
        self.committed = True
        _fsync_directory(target.parent)


@contextlib.contextmanager
def staged_file(directory: Path, label: str) -> Iterator[StagedFile]:
    """A temporary file in ``directory`` (which must exist), named after ``label``; removed on
    leaving the block unless committed, including when the block raises."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{label}.")
    staged = StagedFile(os.fdopen(descriptor, "wb"), Path(temporary))
    try:
        yield staged
    finally:
        if not staged.committed:
            staged.handle.close()
            staged.path.unlink(missing_ok=True)


def write_atomically(
    path: Path, content: bytes | Callable[[BinaryIO], object], *, mode: int = 0o644
) -> None:
    """Replace ``path`` with ``content`` all at once: the bytes themselves, or a function that
    writes them to the handle it is given. A failure leaves ``path`` as it was and no temporary
    file behind."""
    with staged_file(path.parent, path.name) as staged:
        if isinstance(content, bytes):
            staged.handle.write(content)
        else:
            content(staged.handle)
        staged.commit(path, mode=mode)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
