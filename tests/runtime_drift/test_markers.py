"""Reading locks for drift without building anything: PEP 508 markers evaluated for a runtime's
interpreter, PEP 440 version equality, and the entries of each lock format."""

from __future__ import annotations

import pytest

from conveyor.runtime.drift import _same_version
from conveyor.runtime.lock_entries import (
    _evaluate,
    _pylock_entries,
    _requirements_entries,
    _uv_lock_entries,
)

LINUX_311 = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "platform_release": "6.1.0",
    "platform_version": "#1 SMP",
}


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (None, True),
        ("sys_platform == 'win32'", False),
        ('sys_platform != "win32"', True),
        ("python_version < '3.12'", True),
        ("python_version >= '3.12'", False),
        ("python_full_version >= '3.11.7'", True),
        ("python_full_version < '3.11.10'", True),  # numerically, not as text
        ("'3.10' < python_version", True),
        ("python_version == '3.11.*'", True),
        ("python_version != '3.11.*'", False),
        ("python_full_version ~= '3.11.0'", True),
        ("python_full_version ~= '3.10.0'", False),
        ("platform_machine == 'x86_64' and sys_platform == 'linux'", True),
        ("(sys_platform == 'darwin' or sys_platform == 'linux') and os_name == 'posix'", True),
        ("sys_platform == 'win32' or (python_version < '3.9')", False),
        ("'linux' in sys_platform", True),
        ("platform_python_implementation == 'CPython'", True),
        ("platform.python_implementation == 'PyPy'", False),  # a legacy name
        ("implementation_name == 'pypy' and python_version < '3.12'", False),
        # Not evaluable: `extra` (uv's conflict markers), unknown variables, bad syntax.
        ("extra == 'extra-4-tiny-cpu'", None),
        ("no_such_variable == '1'", None),
        ("sys_platform ==", None),
        ("(sys_platform == 'linux'", None),
        # ... but an or/and that is decided regardless is decided.
        ("sys_platform == 'linux' or extra == 'x'", True),
        ("sys_platform == 'win32' and extra == 'x'", False),
        # Ordering strings that are not versions: PEP 508 says as Python does, packaging 26
        # says False; neither is a reason to call an entry missing or extra.
        ("sys_platform < 'win32'", None),
        ("platform_version >= '#1'", None),
        ("'a' == 'a'", None),  # no variable: nothing about the runtime
    ],
)
def test_markers_are_evaluated_for_the_runtime(marker, expected):
    assert _evaluate(marker, LINUX_311) is expected


def test_markers_see_only_the_runtime_never_the_server():
    """A runtime unlike the Python running the tests: every answer is the runtime's; a variable
    its environment does not give is unknown, not filled in from the server's interpreter."""
    pypy_windows = {
        **LINUX_311,
        "python_version": "3.9",
        "python_full_version": "3.9.18",
        "implementation_name": "pypy",
        "implementation_version": "7.3.13",
        "platform_python_implementation": "PyPy",
        "os_name": "nt",
        "sys_platform": "win32",
        "platform_machine": "AMD64",
        "platform_system": "Windows",
    }
    assert _evaluate("sys_platform == 'win32' and python_version < '3.10'", pypy_windows) is True
    assert _evaluate("implementation_name == 'pypy' and os_name == 'nt'", pypy_windows) is True
    assert _evaluate("platform_machine == 'x86_64'", pypy_windows) is False
    without_machine = {k: v for k, v in LINUX_311.items() if k != "platform_machine"}
    for machine in ("x86_64", "aarch64"):
        assert _evaluate(f"platform_machine == '{machine}'", without_machine) is None


def test_group_and_extra_sets_of_pylock_markers():
    sets = {"extras": frozenset(), "dependency_groups": frozenset({"dev"})}
    assert _evaluate("'dev' in dependency_groups", LINUX_311, sets) is True
    assert _evaluate("'lint' in dependency_groups", LINUX_311, sets) is False
    assert _evaluate("'cpu' not in extras", LINUX_311, sets) is True


@pytest.mark.parametrize(
    ("locked", "installed", "same"),
    [
        ("1.16.0", "1.16.0", True),
        ("1.0", "1.0.0", True),
        ("2026.10.19.post1", "2026.10.19-1", True),
        ("1.0rc1", "1.0-RC1", True),
        ("1.0", "1.0.post0", False),
        ("1.0", "1.0.dev0", False),
        ("2.0+cpu", "2.0+cpu", True),
        ("2.0+cpu", "2.0", False),
        ("1.16.0", "1.15.0", False),
        ("not-a-version", "NOT-A-VERSION", True),
    ],
)
def test_versions_compare_as_pep_440_has_it(locked, installed, same):
    assert _same_version(locked, installed) is same


def test_requirements_lock_entries():
    text = (
        "# conveyor.lock: generated\n"
        "--index-url https://pypi.org/simple\n"
        "Six==1.16.0 \\\n"
        "    --hash=sha256:" + "0" * 64 + "\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n"
        "    --hash=sha256:" + "1" * 64 + "\n"
        "uvicorn[standard]==0.30.0 ; python_version >= '3.8' --hash=sha256:" + "2" * 64 + "\n"
        "Typing_Extensions===4.12.2  # pinned exactly\n"
        "tiny @ https://example.com/tiny-1.0-py3-none-any.whl\n"
        "not a requirement at all\n"
    )
    notes: list[str] = []
    entries = _requirements_entries(text, LINUX_311, notes)
    assert [(e.name, e.version, e.applies) for e in entries] == [
        ("six", "1.16.0", True),
        ("colorama", "0.4.6", False),
        ("uvicorn", "0.30.0", True),
        ("typing-extensions", "4.12.2", True),
        ("tiny", None, True),
    ]
    assert len(notes) == 1 and "not a requirement at all" in notes[0]


def test_pylock_entries_follow_markers_and_default_groups():
    data = {
        "default-groups": ["dev"],
        "packages": [
            {"name": "six", "version": "1.16.0"},
            {"name": "colorama", "version": "0.4.6", "marker": "sys_platform == 'win32'"},
            {"name": "iniconfig", "version": "2.3.1", "marker": "'dev' in dependency_groups"},
            {"name": "pluggy", "version": "1.7.0", "marker": "'lint' in dependency_groups"},
        ],
    }
    entries = _pylock_entries(data, LINUX_311)
    assert {e.name: e.applies for e in entries} == {
        "six": True,
        "colorama": False,
        "iniconfig": True,
        "pluggy": False,
    }


def test_uv_lock_entries_are_what_uv_sync_installs(tmp_path):
    """The project's dependencies, its default groups, extras asked for on an edge, markers on
    each edge, and which of two versions of a name an edge means; not the project itself, nor
    its other groups and extras."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "tiny"\nversion = "0.1.0"\n')
    registry = {"registry": "https://pypi.org/simple"}
    data = {
        "package": [
            {
                "name": "tiny",
                "version": "0.1.0",
                "source": {"virtual": "."},
                "dependencies": [
                    {"name": "click"},
                    {"name": "colorama", "marker": "sys_platform == 'win32'"},
                    {"name": "numpy", "version": "2.0.0", "source": registry},
                    {"name": "httpx", "extra": ["http2"]},
                ],
                "optional-dependencies": {"fancy": [{"name": "idna"}]},
                "dev-dependencies": {"dev": [{"name": "iniconfig"}], "lint": [{"name": "ruff"}]},
            },
            {"name": "click", "version": "8.5.1", "source": registry},
            {"name": "colorama", "version": "0.4.6", "source": registry},
            {"name": "numpy", "version": "1.26.4", "source": registry},
            {"name": "numpy", "version": "2.0.0", "source": registry},
            {
                "name": "httpx",
                "version": "0.28.1",
                "source": registry,
                "optional-dependencies": {"http2": [{"name": "h2"}]},
            },
            {"name": "h2", "version": "4.1.0", "source": registry},
            {"name": "idna", "version": "3.20", "source": registry},
            {"name": "iniconfig", "version": "2.3.1", "source": registry},
            {"name": "ruff", "version": "0.9.0", "source": registry},
        ]
    }
    notes: list[str] = []
    entries = _uv_lock_entries(data, tmp_path / "pyproject.toml", LINUX_311, notes)
    assert sorted((e.name, e.version, e.applies) for e in entries) == [
        ("click", "8.5.1", True),
        ("h2", "4.1.0", True),
        ("httpx", "0.28.1", True),
        ("iniconfig", "2.3.1", True),
        ("numpy", "2.0.0", True),
    ]
    assert notes == []

    # `[tool.uv] default-groups` decides the groups, as it does for uv sync.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "tiny"\nversion = "0.1.0"\n[tool.uv]\ndefault-groups = ["lint"]\n'
    )
    names = {e.name for e in _uv_lock_entries(data, tmp_path / "pyproject.toml", LINUX_311, [])}
    assert "ruff" in names and "iniconfig" not in names
