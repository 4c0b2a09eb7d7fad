"""Bytecode shared between runtimes, with real uv builds: a runtime that shares packages with
one built before links their compiled files instead of compiling them again, and what it links
is valid for its own sources (same size and time in the .pyc header, tracebacks naming its own
files). Wheels come from the suite's shared uv cache (UV_CACHE_DIR)."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from conveyor.runtime.builds import RuntimeBuilder
from tests.runtime_inspection import make_lock, run_in


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def counts(log: Log) -> tuple[int, int]:
    """(files linked, files compiled) from a build's bytecode line."""
    [line] = [line for line in log if line.startswith("bytecode:")]
    found = re.match(r"bytecode: (\d+) file\(s\) shared with other runtimes, (\d+) compiled", line)
    assert found, line
    return int(found.group(1)), int(found.group(2))


def compiled_of(source: Path) -> Path:
    [pyc] = (source.parent / "__pycache__").glob(f"{source.stem}.cpython-*.pyc")
    return pyc


def test_a_runtime_sharing_packages_links_their_bytecode_instead_of_compiling(tmp_path):
    home = tmp_path / "home"
    builder = RuntimeBuilder(
        home, cache_dir=Path(os.environ["UV_CACHE_DIR"]), bytecode_dir=tmp_path / "bytecode"
    )
    first_lock = make_lock(tmp_path / "first", "six==1.16.0\n")
    second_lock = make_lock(tmp_path / "second", "six==1.16.0\nidna==3.7\n")
    first_log, second_log = Log(), Log()
    first = builder.ensure(">=3.11", first_lock, "requirements-txt", first_log)
    second = builder.ensure(">=3.11", second_lock, "requirements-txt", second_log)
    assert first.id != second.id

    # The second build compiles idna (new) and what is no hard link (its own copies), and
    # links everything else: six and PyYAML were compiled by the first.
    sources = [
        p
        for top in ("lib", "conveyor-lib")
        for p in (second.path / top).rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    own = [p for p in sources if os.stat(p).st_nlink == 1 or "idna" in p.parts]
    linked, compiled = counts(second_log)
    assert compiled == len(own)
    assert linked == len(sources) - len(own) > 0
    assert counts(first_log)[0] == 0  # nothing to share in a new home

    [six_first] = first.path.glob("lib/python*/site-packages/six.py")
    [six_second] = second.path.glob("lib/python*/site-packages/six.py")
    assert os.stat(six_first).st_ino == os.stat(six_second).st_ino  # uv's hard link
    pyc = compiled_of(six_second)
    assert os.stat(compiled_of(six_first)).st_ino == os.stat(pyc).st_ino  # one compiled file

    # Valid for the second runtime's source: the header's time and size are its source's.
    header = pyc.read_bytes()[:16]
    flags, mtime, size = struct.unpack("<III", header[4:16])
    source = os.stat(six_second)
    assert flags == 0 and (mtime, size) == (int(source.st_mtime) & 0xFFFFFFFF, source.st_size)
    # Loaded from the linked file, the code names the second runtime's source.
    printed = run_in(
        second.python, "import six; print(six.__cached__, six.add_move.__code__.co_filename)"
    )
    cached, filename = printed.split()
    assert Path(cached) == pyc and Path(filename) == six_second
    assert run_in(second.python, "import idna, six; print(idna.encode('bücher.de').decode())") == (
        "xn--bcher-kva.de"
    )


def test_a_file_that_is_no_hard_link_is_compiled_in_each_runtime(tmp_path):
    home = tmp_path / "home"
    builder = RuntimeBuilder(
        home, cache_dir=Path(os.environ["UV_CACHE_DIR"]), bytecode_dir=tmp_path / "bytecode"
    )
    lock = make_lock(tmp_path / "app", None)
    built = builder.ensure(">=3.11", lock, "requirements-txt", Log())
    # Conveyor's library is copied into every runtime: its compiled files are its own.
    [library] = built.path.glob("conveyor-lib/conveyor/config/__init__.py")
    assert os.stat(library).st_nlink == 1
    assert os.stat(compiled_of(library)).st_nlink == 1
