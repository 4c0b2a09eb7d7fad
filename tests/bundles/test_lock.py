"""Locks: a given lock is used as is; loose requirements are locked with the real uv into
conveyor.lock, which later builds reuse while the requirements are unchanged."""

from __future__ import annotations

import pytest

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.build import build_bundle
from conveyor.bundles.lock import (
    GENERATED_LOCK,
    is_fully_pinned,
    python_version,
    resolve_lock,
)
from conveyor.errors import LockFailed

PINNED = """\
six==1.16.0 \\
    --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926 \\
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
"""


def lock_of(root):
    messages: list[str] = []
    return resolve_lock(root, read_app_file(root), progress=messages.append), messages


def test_fully_pinned_requirements_are_used_as_given(make_app):
    root = make_app({"app.py": "", "requirements.txt": PINNED})
    lock, messages = lock_of(root)
    assert lock is not None
    assert (lock.path, lock.format, lock.packages) == ("requirements.txt", "requirements-txt", 1)
    assert "used as given" in lock.note
    assert messages == []
    assert not (root / GENERATED_LOCK).exists()


def test_loose_requirements_are_locked_with_uv_and_reused(make_app, tmp_path):
    root = make_app({"app.py": "", "requirements.txt": "six\n"})
    lock, messages = lock_of(root)
    assert lock is not None and lock.path == GENERATED_LOCK
    assert messages == ["locking requirements.txt with uv for Python >=3.11"]
    text = (root / GENERATED_LOCK).read_text()
    assert "six==" in text and "--hash=sha256:" in text
    assert lock.packages == 1
    first = build_bundle(root, tmp_path / "a.tar.gz")
    assert first.lock is not None and "up to date" in first.lock.note
    assert first.manifest["lock"] == {
        "path": GENERATED_LOCK,
        "format": "requirements-txt",
        "packages": 1,
    }
    assert GENERATED_LOCK in [f["path"] for f in first.manifest["files"]]
    # A second build changes nothing and gives the same id.
    assert build_bundle(root, tmp_path / "b.tar.gz").id == first.id
    # Changing the requirements locks again.
    (root / "requirements.txt").write_text("six\nidna\n")
    relocked, messages = lock_of(root)
    assert messages and relocked is not None and relocked.packages == 2


def test_an_unresolvable_requirement_is_a_clear_error_and_writes_nothing(make_app):
    root = make_app({"app.py": "", "requirements.txt": "conveyor-no-such-package-xyz==1.0\n"})
    with pytest.raises(LockFailed) as caught:
        lock_of(root)
    assert "could not lock requirements.txt with uv" in str(caught.value)
    assert "conveyor-no-such-package-xyz" in str(caught.value)
    assert not (root / GENERATED_LOCK).exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_uv_lock_is_used_as_given(make_app):
    uv_lock = 'version = 1\n[[package]]\nname = "a"\n[[package]]\nname = "b"\n'
    root = make_app(
        {"app.py": "", "uv.lock": uv_lock, "pyproject.toml": "[project]\nname='x'\n"},
        app_file="name: hello\ntype: fastapi\nrequirements: uv.lock\n",
    )
    lock, _ = lock_of(root)
    assert lock is not None and (lock.path, lock.format, lock.packages) == ("uv.lock", "uv.lock", 2)


def test_no_requirements_no_lock(make_app):
    lock, _ = lock_of(make_app())
    assert lock is None


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        (PINNED, True),
        ("six==1.16.0\n", False),
        ("six>=1.0 --hash=sha256:abc\n", False),
        ("-e .\n", False),
        ("", False),
        ("# only a comment\n", False),
    ],
)
def test_is_fully_pinned(text, pinned):
    assert is_fully_pinned(text) is pinned


@pytest.mark.parametrize(
    ("requirement", "version"),
    [(">=3.11", "3.11"), ("==3.12.*", "3.12"), ("~=3.13.1", "3.13"), ("3.12", "3.12")],
)
def test_python_version_to_lock_for(requirement, version):
    assert python_version(requirement) == version
