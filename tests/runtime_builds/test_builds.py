"""Runtime builds with the real uv and real virtual environments: built once per (Python,
platform, lock), reused with no install, read-only, built once under concurrency, and nothing
left behind by a failed build.

Wheels come from the suite's shared uv cache (UV_CACHE_DIR, set in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conveyor.errors import RuntimeFailure
from conveyor.runtime.app_library import LIBRARY_DIR
from conveyor.runtime.builds import MARKER, RuntimeBuilder
from tests.runtime_inspection import make_lock, run_in, uv_project_lock, writable

BUILDING = "building runtime"


@pytest.fixture(scope="module")
def locks(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("locks")
    return {
        "six": make_lock(base / "six", "six==1.16.0\n"),
        "plain": make_lock(base / "plain", None),
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def builder_for(home: Path) -> RuntimeBuilder:
    return RuntimeBuilder(home, cache_dir=Path(os.environ["UV_CACHE_DIR"]))


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def entries(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runtimes").iterdir() if p.name != ".locks")


def test_build_then_reuse_with_no_install(home, locks, tmp_path):
    builder = builder_for(home)
    log = Log()
    built = builder.ensure(">=3.11", locks["six"], "requirements-txt", log)
    assert built.reused is False
    assert built.path == builder.path_of(built.id) == home / "runtimes" / built.id
    assert built.python == built.path / "bin" / "python"
    assert built.python_version == ".".join(str(n) for n in sys.version_info[:3])
    assert sum(BUILDING in line for line in log) == 1
    assert any(line.startswith("Installed ") for line in log), log  # uv's summary line
    assert entries(home) == [built.id]  # no temporary directory left

    # The app's code imports conveyor.config without listing Conveyor, and its packages.
    work = tmp_path / "app"
    work.mkdir()
    (work / "config.yml").write_text("default:\n  url: local\ntest:\n  url: staging\n")
    printed = run_in(
        built.python,
        "from conveyor import config; import six, yaml; "
        "print(config.get('url'), six.__version__, config.__file__)",
        work,
        CONVEYOR_ENV="test",
    )
    url, six_version, library = printed.split()
    assert (url, six_version) == ("staging", "1.16.0")
    assert Path(library).is_relative_to(built.path / LIBRARY_DIR)

    marker = json.loads((built.path / MARKER).read_text())
    assert marker["id"] == built.id and marker["lock_format"] == "requirements-txt"
    assert writable(built.path) == []

    before = built.path.stat()
    again_log = Log()
    started = time.monotonic()
    again = builder.ensure(">=3.11", locks["six"], "requirements-txt", again_log)
    elapsed = time.monotonic() - started
    assert (again.id, again.reused) == (built.id, True)
    assert again_log == [] and elapsed < 0.5
    after = built.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # Another builder (a restarted server) finds it too.
    assert builder_for(home).ensure(">=3.11", locks["six"], "requirements-txt", Log()).reused


def test_another_lock_is_another_runtime(home, locks):
    builder = builder_for(home)
    six = builder.ensure(">=3.11", locks["six"], "requirements-txt", Log())
    plain = builder.ensure(">=3.11", locks["plain"], "requirements-txt", Log())
    assert plain.id != six.id and plain.reused is False
    assert entries(home) == sorted([six.id, plain.id])
    run_in(plain.python, "import conveyor.config, yaml", plain.path)
    missing = subprocess.run([str(plain.python), "-c", "import six"], capture_output=True)
    assert missing.returncode != 0  # exactly the lock, nothing else


def test_two_threads_needing_one_missing_runtime_build_it_once(home, locks):
    builder = builder_for(home)
    log = Log()
    start = threading.Barrier(2)
    results = []

    def need() -> None:
        start.wait()
        results.append(builder.ensure(">=3.11", locks["six"], "requirements-txt", log))

    threads = [threading.Thread(target=need) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2 and results[0].id == results[1].id
    assert sum(BUILDING in line for line in log) == 1
    assert sorted(r.reused for r in results) == [False, True]
    assert entries(home) == [results[0].id]


def test_two_processes_needing_one_missing_runtime_build_it_once(home, locks):
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from conveyor.runtime.builds import RuntimeBuilder
        builder = RuntimeBuilder(Path(sys.argv[1]), cache_dir=Path(os.environ["UV_CACHE_DIR"]))
        info = builder.ensure(">=3.11", Path(sys.argv[2]), "requirements-txt", print)
        print("RESULT", info.id, info.reused)
        """
    )
    command = [sys.executable, "-c", script, str(home), str(locks["six"])]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    combined = "".join(outputs)
    assert combined.count(BUILDING) == 1
    results = sorted(line.split()[2] for line in combined.splitlines() if line.startswith("RESULT"))
    assert results == ["False", "True"]


@pytest.mark.parametrize(
    ("lock_text", "expected"),
    [
        (
            "six==1.16.0 --hash=sha256:" + "0" * 64 + "\n",
            "hash",
        ),
        (
            "conveyor-no-such-package-xyz==1.0 --hash=sha256:" + "0" * 64 + "\n",
            "conveyor-no-such-package-xyz",
        ),
    ],
    ids=["hash mismatch", "no such package"],
)
def test_a_failed_build_leaves_nothing_and_says_why(home, tmp_path, lock_text, expected):
    lock = tmp_path / "conveyor.lock"
    lock.write_text(lock_text)
    log = Log()
    with pytest.raises(RuntimeFailure) as caught:
        builder_for(home).ensure(">=3.11", lock, "requirements-txt", log)
    message = str(caught.value)
    assert "installing conveyor.lock failed" in message
    assert expected in message.lower() or expected in message
    assert any(expected in line.lower() for line in log)  # the log has uv's output
    assert entries(home) == []


def test_an_interrupted_build_is_cleared_before_building_again(home, locks, tmp_path):
    identity = (
        builder_for(tmp_path / "other")
        .ensure(">=3.11", locks["plain"], "requirements-txt", Log())
        .id
    )
    leftover = home / "runtimes" / f".build-{identity[:16]}-dead"
    (leftover / "bin").mkdir(parents=True)
    leftover.chmod(0o555)
    log = Log()
    built = builder_for(home).ensure(">=3.11", locks["plain"], "requirements-txt", log)
    assert built.id == identity and not built.reused
    assert any("left by an interrupted build" in line for line in log)
    assert entries(home) == [identity]


def test_a_python_requirement_nothing_satisfies_lists_the_interpreters(home, locks):
    with pytest.raises(RuntimeFailure) as caught:
        builder_for(home).ensure(">=3.99", locks["six"], "requirements-txt", Log())
    message = str(caught.value)
    assert "'>=3.99'" in message
    assert f"{sys.version_info.major}.{sys.version_info.minor}." in message
    assert not (home / "runtimes").exists() or entries(home) == []


@pytest.mark.parametrize("lock_format", ["uv.lock", "pylock.toml"])
def test_uv_lock_and_pylock_are_installed_exactly(home, tmp_path, lock_format):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "tiny"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["six==1.16.0", "pyyaml"]\n'
    )
    uv_project_lock(project, lock_format)
    built = builder_for(home).ensure(">=3.11", project / lock_format, lock_format, Log())
    printed = run_in(built.python, "import six, conveyor.config; print(six.__version__)", project)
    assert printed == "1.16.0"
    assert not (project / ".venv").exists()  # installed into the runtime, not the project
    assert writable(built.path) == []


def test_unknown_lock_format_and_bad_runtime_id(home, locks):
    builder = builder_for(home)
    with pytest.raises(RuntimeFailure, match="unknown lock format"):
        builder.ensure(">=3.11", locks["six"], "poetry.lock", Log())
    with pytest.raises(RuntimeFailure, match="not a runtime id"):
        builder.path_of("../etc")


def test_a_package_without_a_wheel_is_refused_not_built(home, tmp_path):
    """Building an sdist runs its setup code as the server: the build refuses, says why and
    what to do, and leaves nothing behind."""
    lock = make_lock(tmp_path / "sdist", "sgmllib3k==1.0.0\n")  # published as an sdist only
    with pytest.raises(RuntimeFailure) as refused:
        builder_for(home).ensure(">=3.11", lock, "requirements-txt", Log())
    message = str(refused.value)
    assert "sgmllib3k" in message and "wheels only" in message
    assert "publishes a wheel" in message
    assert entries(home) == []
