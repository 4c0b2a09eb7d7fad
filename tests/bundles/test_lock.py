"""Locks: a given lock is used as is; loose requirements are locked with the real uv into
conveyor.lock, which later builds reuse while the requirements are unchanged. The packages an
app type needs to be served, and PyYAML, are added to what is locked when missing; a given lock
that lacks them is an error."""

from __future__ import annotations

import hashlib

import pytest

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.build import build_bundle
from conveyor.bundles.lock import (
    GENERATED_LOCK,
    is_fully_pinned,
    normalise_name,
    python_version,
    required_packages,
    requirement_names,
    resolve_lock,
)
from conveyor.domain.apps import AppType
from conveyor.errors import LockFailed

PINNED = """\
six==1.16.0 \\
    --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926 \\
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
"""
# What a fastapi app needs besides its own packages, pinned as a given lock must pin them.
SERVED = """\
PyYAML==6.0.4 \
    --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee
uvicorn==0.54.0 \
    --hash=sha256:505bdb0f318731d45f1f712071fc781a8981f6847a31c902c9f5e652d4f67faf
"""


def lock_of(root):
    messages: list[str] = []
    return resolve_lock(root, read_app_file(root), progress=messages.append), messages


def test_fully_pinned_requirements_are_used_as_given(make_app):
    root = make_app({"app.py": "", "requirements.txt": PINNED + SERVED})
    lock, messages = lock_of(root)
    assert (lock.path, lock.format, lock.packages) == ("requirements.txt", "requirements-txt", 3)
    assert "used as given" in lock.note
    assert messages == []
    assert not (root / GENERATED_LOCK).exists()


def test_loose_requirements_are_locked_with_uv_and_reused(make_app, tmp_path):
    root = make_app({"app.py": "", "requirements.txt": "six\n"})
    lock, messages = lock_of(root)
    assert lock.path == GENERATED_LOCK
    assert messages == ["locking requirements.txt with uv for Python >=3.11"]
    text = (root / GENERATED_LOCK).read_text()
    assert "six==" in text and "--hash=sha256:" in text
    locked = requirement_names(text)
    assert {"six", "uvicorn", "pyyaml"} <= locked
    assert lock.packages == len(locked)
    first = build_bundle(root, tmp_path / "a.tar.gz")
    assert "up to date" in first.lock.note
    assert first.manifest["lock"] == {
        "path": GENERATED_LOCK,
        "format": "requirements-txt",
        "packages": lock.packages,
        "sha256": hashlib.sha256((root / GENERATED_LOCK).read_bytes()).hexdigest(),
    }
    assert GENERATED_LOCK in [f["path"] for f in first.manifest["files"]]
    # A second build changes nothing and gives the same id.
    assert build_bundle(root, tmp_path / "b.tar.gz").id == first.id
    # Changing the requirements locks again.
    (root / "requirements.txt").write_text("six\nidna\n")
    relocked, messages = lock_of(root)
    assert messages and relocked.packages == lock.packages + 1


def test_server_packages_are_added_to_the_lock_not_to_the_requirements(make_app):
    root = make_app({"app.py": "", "requirements.txt": "six\n"})
    lock, _ = lock_of(root)
    assert lock.added == ("uvicorn", "pyyaml")
    assert "added uvicorn, pyyaml for a fastapi app" in lock.note
    assert (root / "requirements.txt").read_text() == "six\n"
    header = (root / GENERATED_LOCK).read_text().splitlines()[:3]
    assert header[2] == "# added by Conveyor for a fastapi app: uvicorn pyyaml"
    # The summary says so on every build, not only the one that locked.
    again, messages = lock_of(root)
    assert messages == [] and "added uvicorn, pyyaml for a fastapi app" in again.note
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_packages_the_requirements_name_are_not_added_names_compared_normalised(make_app):
    root = make_app({"app.py": "", "requirements.txt": "Uvicorn[standard]>=0.30\n"})
    lock, _ = lock_of(root)
    assert lock.added == ("pyyaml",)
    (root / "requirements.txt").write_text("UVICORN>=0.30\npy_yaml ; python_version>'3'\n")
    with pytest.raises(LockFailed, match="py-yaml"):  # py_yaml is "py-yaml" after PEP 503
        lock_of(root)
    (root / "requirements.txt").write_text("UVICORN>=0.30\nPyYAML ; python_version>'3'\n")
    lock, messages = lock_of(root)
    assert lock.added == () and "added" not in lock.note
    assert messages  # another input than the first: locked again


def test_requirements_included_with_r_count_as_named(make_app):
    root = make_app(
        {"app.py": "", "requirements.txt": "-r base.txt\nsix\n", "base.txt": "uvicorn\npyyaml\n"}
    )
    lock, _ = lock_of(root)
    assert lock.added == ()
    assert {"six", "uvicorn", "pyyaml"} <= requirement_names((root / GENERATED_LOCK).read_text())
    assert lock_of(root)[1] == []  # unchanged: the lock is reused
    # Editing only the included file makes the lock stale: it is locked again.
    (root / "base.txt").write_text("uvicorn\npyyaml\nidna\n")
    relocked, messages = lock_of(root)
    assert messages and "idna" in requirement_names((root / GENERATED_LOCK).read_text())


def test_pyproject_dependencies_count_as_named(make_app):
    pyproject = '[project]\nname = "x"\nversion = "1"\ndependencies = ["uvicorn"]\n'
    root = make_app(
        {"app.py": "", "pyproject.toml": pyproject},
        app_file="name: hello\ntype: fastapi\nrequirements: pyproject.toml\n",
    )
    lock, _ = lock_of(root)
    assert lock.added == ("pyyaml",)
    assert {"uvicorn", "pyyaml"} <= requirement_names((root / GENERATED_LOCK).read_text())


def test_a_new_set_of_added_packages_locks_again(make_app):
    """The recorded input hash covers the added packages: another app type, or a Conveyor that
    adds other packages, does not pass for up to date."""
    root = make_app({"app.py": "", "requirements.txt": "six\n"})
    lock_of(root)
    (root / "conveyor.yml").write_text("name: hello\ntype: flask\nrequirements: requirements.txt\n")
    lock, messages = lock_of(root)
    assert messages and lock.added == ("gunicorn", "pyyaml")
    assert "gunicorn" in requirement_names((root / GENERATED_LOCK).read_text())


def test_an_app_without_requirements_gets_a_lock_of_what_its_type_needs(make_app, tmp_path):
    root = make_app()
    lock, messages = lock_of(root)
    assert messages == ["locking the packages a fastapi app needs with uv for Python >=3.11"]
    assert (lock.path, lock.format, lock.added) == (
        GENERATED_LOCK,
        "requirements-txt",
        ("uvicorn", "pyyaml"),
    )
    assert "added uvicorn, pyyaml for a fastapi app" in lock.note
    assert {"uvicorn", "pyyaml", "click", "h11"} <= requirement_names(
        (root / GENERATED_LOCK).read_text()
    )
    again, messages = lock_of(root)
    assert messages == [] and again.packages == lock.packages
    assert "up to date (no requirements file)" in again.note
    built = build_bundle(root, tmp_path / "a.tar.gz")
    assert built.manifest["lock"]["path"] == GENERATED_LOCK


@pytest.mark.parametrize(
    ("name", "text", "format_"),
    [
        ("requirements.txt", PINNED, "requirements-txt"),
        ("uv.lock", 'version = 1\n[[package]]\nname = "six"\n', "uv.lock"),
        ("pylock.toml", 'lock-version = "1.0"\n[[packages]]\nname = "six"\n', "pylock.toml"),
    ],
)
def test_a_given_lock_without_the_server_packages_is_a_clear_error(make_app, name, text, format_):
    root = make_app(
        {"app.py": "", name: text, "pyproject.toml": "[project]\nname='x'\n"},
        app_file=f"name: hello\ntype: fastapi\nrequirements: {name}\n",
    )
    with pytest.raises(LockFailed) as caught:
        lock_of(root)
    message = str(caught.value)
    assert f"{name} lacks uvicorn, pyyaml" in message
    assert "uvicorn to serve a fastapi app" in message and "pyyaml for conveyor.config" in message
    assert "loose requirements so Conveyor adds them" in message
    assert not (root / GENERATED_LOCK).exists()


def test_an_unresolvable_requirement_is_a_clear_error_and_writes_nothing(make_app):
    root = make_app({"app.py": "", "requirements.txt": "conveyor-no-such-package-xyz==1.0\n"})
    with pytest.raises(LockFailed) as caught:
        lock_of(root)
    assert "could not lock requirements.txt with uv" in str(caught.value)
    assert "conveyor-no-such-package-xyz" in str(caught.value)
    assert not (root / GENERATED_LOCK).exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_uv_lock_is_used_as_given(make_app):
    packages = "".join(f'[[package]]\nname = "{n}"\n' for n in ("a", "uvicorn", "PyYAML"))
    uv_lock = f"version = 1\n{packages}"
    root = make_app(
        {"app.py": "", "uv.lock": uv_lock, "pyproject.toml": "[project]\nname='x'\n"},
        app_file="name: hello\ntype: fastapi\nrequirements: uv.lock\n",
    )
    lock, _ = lock_of(root)
    assert (lock.path, lock.format, lock.packages) == ("uv.lock", "uv.lock", 3)


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
    [
        (">=3.11", "3.11"),
        ("==3.12.*", "3.12"),
        ("~=3.13.1", "3.13"),
        ("3.12", "3.12"),
        ("3.12.*", "3.12"),
        (">3.10", "3.11"),
        (">=3.11,<3.14", "3.11"),
    ],
)
def test_python_version_to_lock_for(requirement, version):
    assert python_version(requirement) == version


@pytest.mark.parametrize(
    ("app_type", "packages"),
    [
        (AppType.FASTAPI, ("uvicorn", "pyyaml")),
        (AppType.NOTEBOOK, ("nbconvert", "nbclient", "ipykernel", "pyyaml")),
        (AppType.STATIC, ("pyyaml",)),
    ],
)
def test_required_packages(app_type, packages):
    assert required_packages(app_type) == packages


def test_requirement_names_are_pep_503_normalised_and_skip_options_paths_and_urls():
    text = (
        "Flask_Login[extra]>=1 ; python_version > '3'\n"
        "my.pkg @ https://example.com/p.whl\n"
        "-e ./local\n"
        "--index-url https://example.com/simple\n"
        "https://example.com/q.whl\n"
        "six==1.16.0 --hash=sha256:abc\n"
    )
    assert requirement_names(text) == {"flask-login", "my-pkg", "six"}
    assert normalise_name("Zope.Interface__x") == "zope-interface-x"
