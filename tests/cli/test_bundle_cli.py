"""`conveyor bundle` and `conveyor bundle inspect`, and the examples' bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/conveyor.yml"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "hello"
    root.mkdir()
    (root / "conveyor.yml").write_text("name: hello\ntype: fastapi\n")
    (root / "app.py").write_text("app = None\n")
    return root


def test_bundle_prints_id_alias_files_size_and_locked_packages(app, capsys):
    code, out, err = run(capsys, "bundle", str(app))
    assert code == 0, err
    lines = out.splitlines()
    # No lock given: one is written, with the server package a fastapi app needs, and bundled.
    assert (
        "locked 4 packages into conveyor.lock (added uvicorn, pyyaml for a fastapi app)" in lines[0]
    )
    assert (app / "conveyor.lock").is_file()
    assert "bundle " in lines[1] and "(hello, fastapi)" in lines[1]
    header, row = lines[2:4]
    assert header.split() == ["ID", "FILES", "SIZE", "LOCKED", "PACKAGES"]
    assert len(row.split()[0]) == 64 and row.split()[1:2] == ["3"] and row.split()[-1] == "4"
    assert "hashing 3 files" in err  # progress goes to stderr


def test_bundle_json_and_output_file(app, tmp_path, capsys):
    target = tmp_path / "dist" / "hello.tar.gz"
    code, out, _ = run(capsys, "bundle", str(app), "-o", str(target), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["archive"] == str(target) and target.is_file()
    assert data["alias"] == data["id"][:10]
    assert data["files"] == 3 and data["locked_packages"] == 4
    assert data["lock"] == "conveyor.lock" and data["added_packages"] == ["uvicorn", "pyyaml"]


def test_inspect_shows_and_verifies(app, tmp_path, capsys):
    target = tmp_path / "b.tar.gz"
    run(capsys, "bundle", str(app), "-o", str(target))
    code, out, _ = run(capsys, "bundle", "inspect", str(target))
    assert code == 0
    assert "verified: all 3 files match their sha256" in out
    assert "app.py" in out


def test_inspect_refuses_a_tampered_bundle(app, tmp_path, capsys):
    import gzip

    target = tmp_path / "b.tar.gz"
    run(capsys, "bundle", str(app), "-o", str(target))
    raw = gzip.decompress(target.read_bytes()).replace(b"app = None", b"app = 1337")
    (tmp_path / "evil.tar.gz").write_bytes(gzip.compress(raw))
    code, _, err = run(capsys, "bundle", "inspect", str(tmp_path / "evil.tar.gz"))
    assert code == 1
    assert "app.py does not match its sha256" in err


def test_bundle_of_a_directory_without_conveyor_yml(tmp_path, capsys):
    code, _, err = run(capsys, "bundle", str(tmp_path))
    assert code == 1
    assert "has no conveyor.yml" in err and "Traceback" not in err


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_has_one_id_in_two_copies_at_different_paths(example, tmp_path):
    """Two checkouts of an example at different paths, built by separate processes."""
    ids = []
    for where in ("first", "second/checkout"):
        copy = tmp_path / where / example.name
        shutil.copytree(example, copy, ignore=shutil.ignore_patterns(".conveyor", "__pycache__"))
        result = subprocess.run(
            [str(Path(sys.executable).parent / "conveyor"), "bundle", str(copy), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["locked_packages"] > 0
        assert "locking" not in result.stderr  # the committed conveyor.lock is reused
        ids.append(data["id"])
    assert ids[0] == ids[1]
