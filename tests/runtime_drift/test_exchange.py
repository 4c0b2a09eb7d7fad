"""The swap a rebuild ends with: two read-only directories of one parent exchanged, atomically
where the system can (renameat2 on Linux), with three renames where it cannot."""

from __future__ import annotations

import os
import sys

import pytest

from conveyor.runtime import read_only_trees


def two_runtimes(tmp_path):
    for name in ("old", "new"):
        (tmp_path / name / "lib").mkdir(parents=True)
        (tmp_path / name / "lib" / "which").write_text(name)
        read_only_trees.make_read_only(tmp_path / name)
    return tmp_path / "new", tmp_path / "old"


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_an_atomic_exchange_on_linux(tmp_path, monkeypatch):
    new, old = two_runtimes(tmp_path)

    def no_rename(*arguments):
        raise AssertionError("the fallback ran")

    monkeypatch.setattr(read_only_trees.os, "rename", no_rename)
    read_only_trees.exchange_directories(new, old)
    assert (old / "lib" / "which").read_text() == "new"
    assert (new / "lib" / "which").read_text() == "old"


def test_three_renames_where_renameat2_is_missing(tmp_path, monkeypatch):
    new, old = two_runtimes(tmp_path)

    def no_library(*arguments, **keywords):
        raise OSError("no libc here")

    monkeypatch.setattr(read_only_trees.ctypes, "CDLL", no_library)
    read_only_trees.exchange_directories(new, old)
    assert (old / "lib" / "which").read_text() == "new"
    assert (new / "lib" / "which").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["new", "old"]
    read_only_trees.remove_tree(new)
    assert not new.exists()
