"""File selection: .gitignore at every level, `exclude:`, defaults, links and limits."""

from __future__ import annotations

import os

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
