"""Bundles are canonical: the same tree gives the same id wherever and whenever it is built;
any change to what runs gives another."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import time

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
    ["one byte", "mode bit", "added file", "renamed file", "entrypoint", "python", "lock"],
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
    elif change == "lock":
        with open(root / "conveyor.lock", "a") as lock:
            lock.write("# one more line\n")
    assert build(root, tmp_path, "after.tar.gz").id != before


def test_default_output_goes_under_the_app_and_is_not_bundled_next_time(make_app):
    root = make_app(FILES)
    built = build_bundle(root)
    assert built.archive == root / ".conveyor" / "bundles" / f"hello-{built.alias}.tar.gz"
    assert build_bundle(root).id == built.id


def test_gzip_layer_is_deterministic(make_app, tmp_path, monkeypatch):
    root = make_app(FILES)
    first = build_bundle(root, tmp_path / "one" / "first.tar.gz")
    # Another output name and directory, and another clock: gzip would record both by default.
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    second = build_bundle(root, tmp_path / "two" / "second-name.tar.gz")
    assert second.archive.read_bytes() == first.archive.read_bytes()
    raw = first.archive.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"  # gzip, deflate
    assert raw[3] == 0  # flags: no file name, comment or extra field in the header
    assert raw[4:8] == b"\0\0\0\0"  # mtime zero
    assert b"first" not in raw[:64] and b"tar" not in raw[:64]
    with gzip.open(first.archive) as handle:
        assert handle.read(512)[:13] == b"manifest.json"


def test_the_manifest_carries_the_locks_sha256(make_app, tmp_path):
    built = build(make_app(FILES), tmp_path)
    lock = built.manifest["lock"]
    digest = hashlib.sha256((tmp_path / "app" / lock["path"]).read_bytes()).hexdigest()
    assert lock["sha256"] == digest
    assert {"path": lock["path"], "sha256": digest} in [
        {"path": f["path"], "sha256": f["sha256"]} for f in built.manifest["files"]
    ]


def test_a_change_to_the_lock_changes_the_id(make_app, tmp_path):
    root = make_app(FILES)
    before = build(root, tmp_path, "before.tar.gz")
    lock = root / before.manifest["lock"]["path"]
    lock.write_text(lock.read_text().replace("--hash=sha256:", "--hash=sha256:0", 1))
    after = build(root, tmp_path, "after.tar.gz")
    assert "up to date" in after.lock.note  # the lock was reused as edited, not made again
    assert after.manifest["lock"]["sha256"] != before.manifest["lock"]["sha256"]
    assert after.id != before.id


@pytest.mark.parametrize("left_out", ["conveyor.lock", "conveyor.yml"])
def test_a_bundle_without_its_lock_or_app_file_is_refused(make_app, tmp_path, left_out):
    root = make_app(FILES, app_file=f"name: hello\ntype: fastapi\nexclude: [{left_out}]\n")
    with pytest.raises(BundleError, match=f"{left_out} is not among the bundled files"):
        build(root, tmp_path)
    assert not (tmp_path / "bundles" / "out.tar.gz").exists()


def test_a_lock_ignored_by_the_repository_is_refused(make_app, tmp_path):
    root = make_app(FILES, where="repo/app")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "repo", check=True)
    (tmp_path / "repo" / ".gitignore").write_text("*.lock\n")
    with pytest.raises(BundleError, match=r"conveyor.lock is not among .*`git add -f conveyor"):
        build(root, tmp_path)


def test_entrypoint_module_must_be_bundled(make_app, tmp_path):
    root = make_app({"main.py": "app = 1\n"})
    with pytest.raises(BundleError, match="entrypoint 'app:app' needs app.py"):
        build(root, tmp_path)


def test_a_directory_that_is_not_an_app(tmp_path):
    with pytest.raises(BundleError, match="is not a directory"):
        build_bundle(tmp_path / "missing")
    shutil.rmtree(tmp_path)
