"""File selection: .gitignore at every level, or the repository's ignore rules when in a git
work tree; `exclude:`, defaults, links and limits."""

from __future__ import annotations

import os
import subprocess

import pytest

from conveyor.bundles.selection import select_files
from conveyor.errors import BundleError


def paths(root, **kwargs):
    return [f.path for f in select_files(root, **kwargs)]


def test_defaults_leave_out_vcs_envs_caches_and_checkpoints(make_app):
    root = make_app(
        {
            "app.py": "",
            ".git/HEAD": "ref",
            ".venv/bin/python": "",
            "pkg/__pycache__/x.cpython-311.pyc": "",
            "pkg/mod.pyc": "",
            "pkg/mod.py": "",
            "nb/.ipynb_checkpoints/a-checkpoint.ipynb": "{}",
            "nb/a.ipynb": "{}",
            ".conveyor/bundles/old.tar.gz": "",
        }
    )
    assert paths(root) == ["app.py", "conveyor.yml", "nb/a.ipynb", "pkg/mod.py"]


def test_gitignore_files_at_every_level_with_negation(make_app):
    root = make_app(
        {
            ".gitignore": "*.log\n/build/\n",
            "app.py": "",
            "run.log": "",
            "build/out.js": "",
            "src/build/keep.py": "",
            "data/.gitignore": "*.csv\n!small.csv\n",
            "data/big.csv": "",
            "data/small.csv": "",
            "data/deep/other.csv": "",
            "data/deep/notes.txt": "",
        }
    )
    assert paths(root) == [
        ".gitignore",
        "app.py",
        "conveyor.yml",
        "data/.gitignore",
        "data/deep/notes.txt",
        "data/small.csv",
        "src/build/keep.py",
    ]


def test_exclude_globs(make_app):
    root = make_app({"app.py": "", "data/raw/a.parquet": "", "data/ref.json": "", "x.parquet": ""})
    assert paths(root, exclude=("data/raw/", "*.parquet")) == [
        "app.py",
        "conveyor.yml",
        "data/ref.json",
    ]


def test_links_inside_are_followed_and_links_outside_refused(make_app, tmp_path):
    root = make_app({"app.py": "x = 1\n"})
    os.symlink("app.py", root / "alias.py")
    selected = {f.path: f for f in select_files(root)}
    assert selected["alias.py"].size == len("x = 1\n")
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    with pytest.raises(BundleError, match="leak.txt is a link to .*outside the app directory"):
        select_files(root)


def test_a_dangling_link_is_refused_with_its_name(make_app):
    root = make_app()
    os.symlink("missing.py", root / "broken.py")
    with pytest.raises(BundleError, match="broken.py is a link to .*missing.py, which does not"):
        select_files(root)


def test_fifo_is_refused(make_app):
    root = make_app()
    os.mkfifo(root / "pipe")
    with pytest.raises(BundleError, match="pipe is not a regular file"):
        select_files(root)


def test_limits_refuse_with_a_way_out_and_large_files_warn(make_app):
    root = make_app({"app.py": "", "model.bin": "x" * (11 * 1024 * 1024)})
    warnings: list[str] = []
    select_files(root, warn=warnings.append)
    assert warnings and "model.bin is large (11.0 MB)" in warnings[0]
    with pytest.raises(BundleError, match=r"model.bin is 11.0 MB, over the 5 MB limit.*exclude"):
        select_files(root, max_file_mb=5)
    with pytest.raises(BundleError, match=r"over the 10 MB limit.*limits: total_mb"):
        select_files(root, max_total_mb=10)
    with pytest.raises(BundleError, match="more than 2 files.*limits: files"):
        select_files(root, max_files=2)


def test_env_files_are_left_out_unless_an_exclude_negation_keeps_one(make_app):
    root = make_app(
        {
            "app.py": "",
            ".env": "TOKEN=s3cret\n",
            ".env.local": "",
            "pkg/.env": "",
            ".env.example": "",
        }
    )
    assert paths(root) == ["app.py", "conveyor.yml"]
    assert paths(root, exclude=("!.env.example",)) == [".env.example", "app.py", "conveyor.yml"]


def git(where, *args):
    subprocess.run(
        ["git", "-c", "user.name=Ana", "-c", "user.email=ana@example.com", *args],
        cwd=where,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path):
    """An empty git work tree; apps go in directories under it."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    return root


def test_in_a_git_work_tree_the_repositorys_ignore_rules_apply(repo, make_app, tmp_path):
    app = make_app(
        {
            "app.py": "",
            "run.log": "",
            "notes.draft": "",
            "private.key": "",
            "scratch.tmp": "",
            "data/.gitignore": "*.csv\n!small.csv\n",
            "data/big.csv": "",
            "data/small.csv": "",
        },
        where="repo/apps/hello",
    )
    (repo / ".gitignore").write_text("*.log\n")  # at the root of the repository
    (repo / "apps" / ".gitignore").write_text("*.draft\n")  # between the root and the app
    (repo / ".git" / "info" / "exclude").write_text("*.key\n")
    (tmp_path / "global-ignore").write_text("*.tmp\n")
    git(repo, "config", "core.excludesFile", str(tmp_path / "global-ignore"))
    assert paths(app) == ["app.py", "conveyor.yml", "data/.gitignore", "data/small.csv"]


def test_in_a_git_work_tree_tracked_files_are_bundled_and_deleted_ones_are_not(repo, make_app):
    app = make_app({"app.py": "", "model.bin": "weights", "old.py": ""}, where="repo/hello")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (app / ".gitignore").write_text("*.bin\n")  # ignored, but tracked: git keeps it
    (app / "old.py").unlink()
    assert paths(app) == [".gitignore", "app.py", "conveyor.yml", "model.bin"]


def test_in_a_git_work_tree_defaults_exclude_and_links_still_apply(repo, make_app, tmp_path):
    app = make_app(
        {"app.py": "x = 1\n", ".env": "", "pkg/__pycache__/m.pyc": "", "raw/a.parquet": ""},
        where="repo/hello",
    )
    os.symlink("app.py", app / "alias.py")
    assert paths(app, exclude=("raw/",)) == ["alias.py", "app.py", "conveyor.yml"]
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", app / "leak.txt")
    with pytest.raises(BundleError, match="leak.txt is a link to .*outside the app directory"):
        select_files(app)


def test_a_nested_repository_inside_the_app_is_walked(repo, make_app):
    app = make_app({"app.py": "", "vendor/lib/mod.py": "", "vendor/lib/x.log": ""}, where="repo/a")
    git(app / "vendor" / "lib", "init", "-q")
    (app / "vendor" / "lib" / ".gitignore").write_text("*.log\n")
    assert paths(app) == [
        "app.py",
        "conveyor.yml",
        "vendor/lib/.gitignore",
        "vendor/lib/mod.py",
    ]


def test_without_git_the_directory_is_walked(repo, make_app, monkeypatch):
    app = make_app({"app.py": "", "run.log": "", "keep.txt": ""}, where="repo/hello")
    (repo / ".gitignore").write_text("*.log\n")
    assert paths(app) == ["app.py", "conveyor.yml", "keep.txt"]
    monkeypatch.setenv("PATH", "/nonexistent")  # no git to ask: only the app's own files count
    assert paths(app) == ["app.py", "conveyor.yml", "keep.txt", "run.log"]


def test_a_git_failure_is_an_error_not_a_silent_fallback(make_app, monkeypatch, tmp_path):
    app = make_app()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\necho 'fatal: detected dubious ownership' >&2\nexit 128\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(BundleError, match="git could not list the files .* dubious ownership"):
        select_files(app)
