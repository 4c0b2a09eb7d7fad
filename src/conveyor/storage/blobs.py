"""Content-addressed blobs: each stored under its sha256, written to a temporary file, fsynced
and renamed into place, and checked against its hash when read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from conveyor.errors import IntegrityError, NotFound
from conveyor.storage.atomic_files import staged_file

_CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def put_file(self, source: Path) -> str:
        """Store a copy of ``source``; return its sha256. Storing the same content twice keeps
        one copy."""
        with open(source, "rb") as handle:
            return self._put(handle.read, source.name)

    def put_bytes(self, data: bytes) -> str:
        chunks = iter([data])
        return self._put(lambda _size: next(chunks, b""), "bytes")

    def _put(self, read: Callable[[int], bytes], label: str) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with staged_file(self.root, "incoming") as staged:
            while chunk := read(_CHUNK):
                digest.update(chunk)
                staged.handle.write(chunk)
            target = self.path_of(digest.hexdigest())
            if not target.is_file():  # else the same content is already stored: keep that copy
                target.parent.mkdir(parents=True, exist_ok=True)
                staged.commit(target)
        return digest.hexdigest()

    def verified_path(self, digest: str) -> Path:
        """The blob's path, after checking that its content still hashes to ``digest``."""
        path = self.path_of(digest)
        if not path.is_file():
            raise NotFound(f"blob {digest[:12]} is not in the store ({self.root})")
        actual = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                actual.update(chunk)
        if actual.hexdigest() != digest:
            raise IntegrityError(
                f"blob {digest[:12]} at {path} is corrupt: its content hashes to "
                f"{actual.hexdigest()[:12]}; restore it from a backup or upload the bundle again"
            )
        return path

    def read(self, digest: str) -> bytes:
        return self.verified_path(digest).read_bytes()
