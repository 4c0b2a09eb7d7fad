"""Parsing is cached by (path, mtime, size) (point 11)."""

from __future__ import annotations

import os

import pytest

from conveyor import config


def _rewrite_keeping_mtime_and_size(path, text):
    stat = os.stat(path)
    assert len(text.encode()) == stat.st_size
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_unchanged_mtime_and_size_means_the_file_is_not_read_again(write):
    path = write("default:\n  url: aaaa\n")
    assert config.get("url") == "aaaa"
    # Same size, same mtime, different bytes: only a re-read could see "bbbb".
    _rewrite_keeping_mtime_and_size(path, "default:\n  url: bbbb\n")
    for _ in range(100):
        assert config.get("url") == "aaaa"


def test_an_edited_file_is_picked_up(write):
    path = write("default:\n  url: aaaa\n")
    assert config.get("url") == "aaaa"
    path.write_text("default:\n  url: a longer value\n")
    assert config.get("url") == "a longer value"


def test_an_edit_of_the_same_size_is_picked_up_by_mtime(write):
    path = write("default:\n  url: aaaa\n")
    assert config.get("url") == "aaaa"
    stat = os.stat(path)
    path.write_text("default:\n  url: bbbb\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert config.get("url") == "bbbb"


def test_a_file_fixed_after_an_error_is_read_again(write):
    path = write("default:\n  url: [broken\n")
    with pytest.raises(config.ConfigSyntaxError):
        config.get()
    path.write_text("default:\n  url: fixed\n")
    assert config.get("url") == "fixed"
