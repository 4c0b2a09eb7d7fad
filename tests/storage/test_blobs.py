from __future__ import annotations

import hashlib

import pytest

from conveyor.errors import IntegrityError, NotFound
from conveyor.storage.blobs import BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put_bytes(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    source = tmp_path / "same.txt"
    source.write_bytes(b"hello")
    assert blobs.put_file(source) == digest
    assert blobs.read(digest) == b"hello"
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [blobs.path_of(digest)]  # one copy, no temporary files left


def test_corrupt_blob_is_detected_on_read(tmp_path):
    blobs = BlobStore(tmp_path)
    digest = blobs.put_bytes(b"original")
    blobs.path_of(digest).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="is corrupt"):
        blobs.read(digest)


def test_missing_blob(tmp_path):
    with pytest.raises(NotFound):
        BlobStore(tmp_path).read("ab" * 32)
