"""Bundles are canonical: the same tree gives the same id wherever and whenever it is built;
any change to what runs gives another."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tarfile

import pytest

from conveyor.bundles.archive import read_manifest, verify
from conveyor.bundles.build import build_bundle
from conveyor.errors import BundleError

FILES = {
    "app.py": "from fastapi import FastAPI\napp = FastAPI()\n",
    "config.yml": "default:\n  url: local\n",
    "pkg/model.py": "WEIGHTS = [1, 2, 3]\n",
    "static/logo.svg": "<svg/>",
}


def build(root, tmp_path, name="out.tar.gz"):
    return build_bundle(root, tmp_path / "bundles" / name)


def test_manifest_lists_every_file_with_sha256_size_and_mode(make_app, tmp_path):
    root = make_app(FILES)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o700)
    built = build(root, tmp_path)
    files = {f["path"]: f for f in built.manifest["files"]}
    assert sorted(files) == [
        "app.py",
        "config.yml",
        "conveyor.lock",  # an app without requirements gets one with its server packages
        "conveyor.yml",
        "pkg/model.py",
        "run.sh",
        "static/logo.svg",
    ]
    assert files["run.sh"]["mode"] == 0o755
    assert files["app.py"]["mode"] == 0o644
    assert files["app.py"]["size"] == len(FILES["app.py"])
    assert built.manifest["type"] == "fastapi"
    assert built.manifest["entrypoint"] == "app:app"
    assert built.manifest["lock"]["path"] == "conveyor.lock"
    assert verify(built.archive).id == built.id


def test_archive_entries_are_canonical(make_app, tmp_path):
    root = make_app(FILES)
    built = build(root, tmp_path)
    raw = built.archive.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    with tarfile.open(built.archive) as tar:
        members = tar.getmembers()
    assert members[0].name == "manifest.json"
    names = [m.name for m in members[1:]]
    assert names == sorted(names)
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
        assert member.mode in (0o644, 0o755)


def test_same_tree_same_id_across_builds_times_paths_and_creation_order(make_app, tmp_path):
    first = build(make_app(FILES, where="one"), tmp_path, "1.tar.gz")
    again = build(tmp_path / "one", tmp_path, "2.tar.gz")
    assert again.id == first.id
    assert again.archive.read_bytes() == first.archive.read_bytes()

    # touched mtimes
    for path in (tmp_path / "one").rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert build(tmp_path / "one", tmp_path, "3.tar.gz").id == first.id

    # another checkout path, files created in reverse order
    reverse = dict(reversed(list(FILES.items())))
    other = make_app(reverse, where="elsewhere/deeper/two")
    assert build(other, tmp_path, "4.tar.gz").id == first.id


def test_same_tree_on_two_git_branches_has_one_id_and_different_provenance(make_app, tmp_path):
    root = make_app(FILES)
    git = ["git", "-c", "user.name=Ana", "-c", "user.email=ana@example.com"]

    def run(*args):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)

    build(root, tmp_path, "first.tar.gz")  # writes conveyor.lock, committed with the rest
    run("init", "-q", "-b", "test")
    run("add", "-A")
    run("commit", "-qm", "first")
    on_test = build(root, tmp_path, "t.tar.gz")
    run("checkout", "-q", "-b", "main")
    run("commit", "-q", "--allow-empty", "-m", "merge")
    on_main = build(root, tmp_path, "m.tar.gz")
    assert on_main.id == on_test.id
    assert on_test.provenance["git"]["branch"] == "test"
    assert on_main.provenance["git"]["branch"] == "main"
    assert on_main.provenance["git"]["commit"] != on_test.provenance["git"]["commit"]
    assert on_main.provenance["git"]["dirty"] is False
    assert "provenance" not in read_manifest(on_main.archive)


@pytest.mark.parametrize(
    "change",
    ["one byte", "mode bit", "added file", "renamed file", "entrypoint", "python"],
)
def test_any_change_to_what_runs_changes_the_id(make_app, tmp_path, change):
    root = make_app(FILES)
    before = build(root, tmp_path, "before.tar.gz").id
    if change == "one byte":
        (root / "pkg/model.py").write_text(FILES["pkg/model.py"].replace("3", "4"))
    elif change == "mode bit":
        (root / "app.py").chmod(0o755)
    elif change == "added file":
        (root / "notes.txt").write_text("x")
    elif change == "renamed file":
        (root / "pkg/model.py").rename(root / "pkg/models.py")
    elif change == "entrypoint":
        (root / "conveyor.yml").write_text("name: hello\ntype: fastapi\nentrypoint: app:api\n")
    elif change == "python":
        (root / "conveyor.yml").write_text("name: hello\ntype: fastapi\npython: '>=3.12'\n")
    assert build(root, tmp_path, "after.tar.gz").id != before


def test_default_output_goes_under_the_app_and_is_not_bundled_next_time(make_app):
    root = make_app(FILES)
    built = build_bundle(root)
    assert built.archive == root / ".conveyor" / "bundles" / f"hello-{built.alias}.tar.gz"
    assert build_bundle(root).id == built.id


def test_gzip_layer_is_deterministic(make_app, tmp_path):
    built = build(make_app(FILES), tmp_path)
    with gzip.open(built.archive) as handle:
        assert handle.read(512)[:13] == b"manifest.json"


def test_entrypoint_module_must_be_bundled(make_app, tmp_path):
    root = make_app({"main.py": "app = 1\n"})
    with pytest.raises(BundleError, match="entrypoint 'app:app' needs app.py"):
        build(root, tmp_path)


def test_a_directory_that_is_not_an_app(tmp_path):
    with pytest.raises(BundleError, match="is not a directory"):
        build_bundle(tmp_path / "missing")
    shutil.rmtree(tmp_path)
