"""Drift with real runtimes built by RuntimeBuilder and changed the way a person fixing things by
hand would (make it writable, then uv pip or an editor): each change is found, and repair
rebuilds the runtime, swaps it in at the same path and leaves it clean.

Wheels come from the suite's shared uv cache (UV_CACHE_DIR, set in tests/conftest.py), except in
the test that edits an installed file in place: installed files are hard links into uv's cache,
so that edit would change the shared cache, and it gets a cache of its own."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conveyor.bundles.lock import uv_binary
from conveyor.errors import NotFound, RuntimeFailure
from conveyor.runtime.app_library import LIBRARY_DIR
from conveyor.runtime.builds import RuntimeBuilder, RuntimeInfo
from conveyor.runtime.drift import DistributionDrift, FileDrift, repair, runtime_drift
from tests.runtime_inspection import make_lock, run_in, uv_project_lock, writable

FORMAT = "requirements-txt"


@pytest.fixture(scope="module")
def lock(tmp_path_factory) -> Path:
    """six 1.16.0 and PyYAML, pinned with hashes."""
    return make_lock(tmp_path_factory.mktemp("locks") / "six", "six==1.16.0\n")


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def builder_for(home: Path, cache: Path | None = None) -> RuntimeBuilder:
    return RuntimeBuilder(home, cache_dir=cache or Path(os.environ["UV_CACHE_DIR"]))


def build(home: Path, lock: Path, cache: Path | None = None) -> tuple[RuntimeBuilder, RuntimeInfo]:
    builder = builder_for(home, cache)
    return builder, builder.ensure(">=3.11", lock, FORMAT, Log())


def by_hand(runtime: Path, *arguments: str) -> None:
    """`chmod -R u+w` the runtime, then `uv pip ...` on it, as a person would."""
    subprocess.run(["chmod", "-R", "u+w", str(runtime)], check=True)
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    environment.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [uv_binary(), "pip", *arguments, "--python", str(runtime / "bin" / "python")],
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )


def site_packages(runtime: Path) -> Path:
    (found,) = runtime.glob("lib/python*/site-packages")
    return found


def retired(home: Path, runtime_id: str) -> list[Path]:
    return sorted((home / "runtimes").glob(f".retired-{runtime_id}-*"))


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runtimes").iterdir() if p.name.startswith(".build-"))


def assert_repaired(builder: RuntimeBuilder, home: Path, lock: Path, info: RuntimeInfo):
    """repair rebuilds at the same path, the result is clean and read-only, the drifted runtime
    is kept aside until remove_retired, which removes it although it is read-only."""
    log = Log()
    result = repair(builder, ">=3.11", lock, FORMAT, log)
    assert result.rebuilt and not result.before.clean
    assert result.after.clean, result.after.summary()
    assert (result.runtime.id, result.runtime.path) == (info.id, info.path)
    assert runtime_drift(info.path, lock, FORMAT).clean
    assert writable(info.path) == []
    assert run_in(
        info.path / "bin" / "python", "import six, yaml, conveyor.config; print(six.__version__)"
    ) == ("1.16.0")
    assert any("rebuilt" in line for line in log), log
    (old,) = retired(home, info.id)
    assert not runtime_drift(old, lock, FORMAT).clean  # kept for inspection, drift and all
    assert builder.remove_retired(info.id) == [old]
    assert not old.exists() and retired(home, info.id) == [] and leftovers(home) == []
    return result


def test_a_fresh_runtime_matches_its_lock(tmp_path, lock):
    _, info = build(tmp_path / "home", lock)
    started = time.monotonic()
    drift = runtime_drift(info.path, lock, FORMAT)
    elapsed = time.monotonic() - started
    assert drift.clean, drift.summary()
    assert (drift.id, drift.runtime) == (info.id, info.path)
    assert drift.distributions_checked == 2  # six, PyYAML
    assert drift.files_checked > 20
    assert drift.notes == ()  # Conveyor's library copy was compared too
    assert drift.refresh == ()
    assert drift.summary().startswith(f"runtime {info.id[:12]} matches its lock (2 distr")
    assert elapsed < 2.0


def test_drift_refuses_another_lock_or_a_directory_that_is_no_runtime(tmp_path, lock):
    _, info = build(tmp_path / "home", lock)
    other = tmp_path / "other.lock"
    other.write_text(lock.read_text() + "\n")
    with pytest.raises(RuntimeFailure, match="was not built from"):
        runtime_drift(info.path, other, FORMAT)
    with pytest.raises(RuntimeFailure, match="was not built from"):
        runtime_drift(info.path, lock, "pylock.toml")
    with pytest.raises(RuntimeFailure, match="not a complete runtime"):
        runtime_drift(tmp_path, lock, FORMAT)
    with pytest.raises(NotFound):
        repair(builder_for(tmp_path / "empty"), ">=3.11", lock, FORMAT, Log())


def test_a_package_installed_by_hand_is_extra_and_repair_clears_it(tmp_path, lock):
    home = tmp_path / "home"
    builder, info = build(home, lock)
    by_hand(info.path, "install", "iniconfig==2.0.0")
    assert (
        run_in(info.path / "bin" / "python", "import iniconfig; print('importable')")
        == "importable"
    )

    drift = runtime_drift(info.path, lock, FORMAT)
    assert drift.extra == (DistributionDrift("iniconfig", None, "2.0.0"),)
    assert (drift.missing, drift.changed, drift.files) == ((), (), ())
    assert not drift.clean
    assert "extra: iniconfig 2.0.0, not in the lock" in drift.summary()

    # A release running on the runtime keeps running through the repair and the removal of
    # the drifted tree; what it imports afterwards comes from the rebuilt one.
    running = subprocess.Popen(
        [
            str(info.python),
            "-c",
            "import sys, six; print('ready', flush=True); "
            "sys.stdin.readline(); import yaml; print(six.__version__, yaml.__file__)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    try:
        assert running.stdout is not None and running.stdout.readline().strip() == "ready"
        assert_repaired(builder, home, lock, info)
        printed, _ = running.communicate("\n", timeout=60)
    finally:
        running.kill()
    version, yaml_file = printed.split()
    assert version == "1.16.0" and Path(yaml_file).is_relative_to(info.path)
    with pytest.raises(AssertionError):
        run_in(info.path / "bin" / "python", "import iniconfig")


def test_an_uninstalled_package_is_missing(tmp_path, lock):
    home = tmp_path / "home"
    builder, info = build(home, lock)
    by_hand(info.path, "uninstall", "pyyaml")
    drift = runtime_drift(info.path, lock, FORMAT)
    version = next(line for line in lock.read_text().splitlines() if line.startswith("pyyaml=="))
    locked = version.split("==")[1].split()[0]
    assert drift.missing == (DistributionDrift("pyyaml", locked, None),)
    assert (drift.extra, drift.changed, drift.files) == ((), (), ())
    assert f"missing: pyyaml {locked}, in the lock, not installed" in drift.summary()
    assert_repaired(builder, home, lock, info)


def test_another_version_installed_by_hand_is_changed(tmp_path, lock):
    home = tmp_path / "home"
    builder, info = build(home, lock)
    by_hand(info.path, "install", "six==1.15.0")
    drift = runtime_drift(info.path, lock, FORMAT)
    assert drift.changed == (DistributionDrift("six", "1.16.0", "1.15.0"),)
    assert (drift.missing, drift.extra, drift.files) == ((), (), ())
    assert "changed: six 1.15.0 installed, the lock has 1.16.0" in drift.summary()
    assert_repaired(builder, home, lock, info)


def test_replaced_deleted_and_added_files_are_found(tmp_path, lock):
    """An editor that writes a new file (sed -i), a deleted module, a .pth and a module dropped
    into site-packages, and an edit to Conveyor's library copy."""
    home = tmp_path / "home"
    builder, info = build(home, lock)
    subprocess.run(["chmod", "-R", "u+w", str(info.path)], check=True)
    site = site_packages(info.path)
    six = site / "six.py"
    replacement = site / "six.py.new"
    replacement.write_text(six.read_text() + "\nPATCHED = True\n")
    os.replace(replacement, six)
    deleted = site / "yaml" / "cyaml.py"
    deleted.unlink()
    (site / "zz_hook.pth").write_text("import os\n")
    (site / "yaml" / "extra_module.py").write_text("")
    (site / "yaml" / "__pycache__" / "not_checked.cpython-311.pyc").write_bytes(b"")
    library = info.path / LIBRARY_DIR / "conveyor" / "config" / "__init__.py"
    library.write_text(library.read_text() + "\n# patched\n")

    drift = runtime_drift(info.path, lock, FORMAT)
    relative = site.relative_to(info.path)
    assert set(drift.files) == {
        FileDrift(str(relative / "six.py"), "six", "changed", shared=False),
        FileDrift(str(relative / "yaml" / "cyaml.py"), "pyyaml", "missing"),
        FileDrift(str(relative / "zz_hook.pth"), None, "added"),
        FileDrift(str(relative / "yaml" / "extra_module.py"), None, "added"),
        FileDrift(str(library.relative_to(info.path)), LIBRARY_DIR, "changed"),
    }
    assert (drift.missing, drift.extra, drift.changed) == ((), (), ())
    assert drift.refresh == ()  # the replaced file is no link into uv's cache
    summary = drift.summary()
    assert f"file changed: {relative / 'six.py'} (six)" in summary
    assert f"file added: {relative / 'zz_hook.pth'}" in summary
    assert_repaired(builder, home, lock, info)


def test_a_file_edited_in_place_is_found_and_repair_does_not_link_the_edit_back(tmp_path, lock):
    """Installed files are hard links into uv's cache: an edit in place changes the cache too,
    so repair removes that package from the cache and installs it downloaded again."""
    home, cache = tmp_path / "home", tmp_path / "uv-cache"
    builder, info = build(home, lock, cache)
    six = site_packages(info.path) / "six.py"
    original = six.read_bytes()
    assert six.stat().st_nlink > 1  # linked from the cache
    six.chmod(0o644)
    with open(six, "r+b") as handle:  # as an editor that keeps hard links does
        handle.seek(0, os.SEEK_END)
        handle.write(b"\nPATCHED = True\n")

    drift = runtime_drift(info.path, lock, FORMAT)
    relative = str(six.relative_to(info.path))
    assert drift.files == (FileDrift(relative, "six", "changed", shared=True),)
    assert drift.refresh == ("six",)
    assert "hard-linked: uv's cache and runtimes sharing it have the edit" in drift.summary()

    # Without refreshing the cache, a rebuild would link the edited file back: the check
    # before the swap stops it, and the drifted runtime stays in place.
    before = info.path.stat().st_ino

    def require_clean(staged: Path) -> None:
        rebuilt = runtime_drift(staged, lock, FORMAT)
        if not rebuilt.clean:
            raise RuntimeFailure(rebuilt.summary())

    with pytest.raises(RuntimeFailure, match="six.py"):
        builder.rebuild(">=3.11", lock, FORMAT, Log(), check=require_clean)
    assert info.path.stat().st_ino == before and leftovers(home) == []

    result = assert_repaired(builder, home, lock, info)
    assert result.refreshed == ("six",)
    assert six.read_bytes() == original


def test_a_rebuild_whose_check_fails_leaves_the_runtime_in_place(tmp_path, lock):
    home = tmp_path / "home"
    builder, info = build(home, lock)
    before = info.path.stat().st_ino
    checked: list[Path] = []

    def refuse(staged: Path) -> None:
        checked.append(staged)
        assert staged.parent == info.path.parent and runtime_drift(staged, lock, FORMAT).clean
        raise RuntimeFailure("refused")

    with pytest.raises(RuntimeFailure, match="refused"):
        builder.rebuild(">=3.11", lock, FORMAT, Log(), check=refuse)
    assert len(checked) == 1 and not checked[0].exists()
    assert info.path.stat().st_ino == before
    assert leftovers(home) == [] and retired(home, info.id) == []
    assert builder.remove_retired() == []

    # A clean runtime is not rebuilt by repair.
    result = repair(builder, ">=3.11", lock, FORMAT, Log())
    assert not result.rebuilt and result.after.clean and info.path.stat().st_ino == before


@pytest.mark.parametrize("lock_format", ["uv.lock", "pylock.toml"])
def test_uv_lock_and_pylock_runtimes_match_their_locks(tmp_path, lock_format):
    """A marker for another platform, an extra and a group that are not installed are not
    missing; the default dev group is installed, so removing it is found."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "tiny"
            version = "0.1.0"
            requires-python = ">=3.11"
            dependencies = ["six==1.16.0", "pyyaml", "colorama ; sys_platform == 'win32'"]

            [project.optional-dependencies]
            fancy = ["idna"]

            [dependency-groups]
            dev = ["iniconfig"]
            lint = ["pluggy"]
            """
        )
    )
    uv_project_lock(project, lock_format)
    builder = builder_for(tmp_path / "home")
    info = builder.ensure(">=3.11", project / lock_format, lock_format, Log())
    drift = runtime_drift(info.path, project / lock_format, lock_format)
    assert drift.clean, drift.summary()
    assert drift.distributions_checked == 3  # six, pyyaml, iniconfig
    assert drift.notes == ()

    by_hand(info.path, "uninstall", "iniconfig")
    drift = runtime_drift(info.path, project / lock_format, lock_format)
    assert [d.name for d in drift.missing] == ["iniconfig"]
    assert (drift.extra, drift.changed, drift.files) == ((), (), ())
