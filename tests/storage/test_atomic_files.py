"""Atomic file writes: readers see the old content or the new, and a failure leaves the old
content and no temporary file behind. Bundles, locks and blobs all write through them."""

from __future__ import annotations

import inspect
import stat

import pytest

from conveyor.bundles import build, lock
from conveyor.storage import blobs
from conveyor.storage.atomic_files import staged_file, write_atomically


def test_write_bytes_or_through_a_writer_replacing_what_was_there(tmp_path):
    target = tmp_path / "conveyor.lock"
    write_atomically(target, b"first\n")
    assert target.read_bytes() == b"first\n"
    write_atomically(target, lambda handle: handle.write(b"second\n"))
    assert target.read_bytes() == b"second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert list(tmp_path.iterdir()) == [target]


def test_a_failing_writer_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "bundle.tar.gz"
    target.write_bytes(b"old")

    def writer(handle):
        handle.write(b"half of the new")
        raise RuntimeError("the source changed")

    with pytest.raises(RuntimeError, match="the source changed"):
        write_atomically(target, writer)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_a_staged_file_not_committed_is_removed(tmp_path):
    with staged_file(tmp_path, "blob") as staged:
        staged.handle.write(b"data")
        assert staged.path.exists()
    assert list(tmp_path.iterdir()) == []
    with staged_file(tmp_path, "blob") as staged:
        staged.handle.write(b"data")
        staged.commit(tmp_path / "kept")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]


@pytest.mark.parametrize("module", [build, lock, blobs])
def test_bundles_locks_and_blobs_write_through_this_module(module):
    source = inspect.getsource(module)
    assert "mkstemp" not in source and "os.fsync(" not in source and "os.replace(" not in source
