"""Interpreters: discovered from this machine with the real uv (nothing downloaded), matched
against an app's Python requirement."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conveyor.bundles.lock import uv_binary
from conveyor.errors import RuntimeFailure
from conveyor.runtime.interpreters import Interpreter, choose, discover, satisfies


def fake(version: str, executable: str = "/opt/python/bin/python3") -> Interpreter:
    return Interpreter(Path(executable), version, "cpython", "linux-x86_64", "cpython-3")


@pytest.mark.parametrize(
    ("version", "requirement", "expected"),
    [
        ("3.11.7", ">=3.11", True),
        ("3.11.7", ">=3.12", False),
        ("3.12.0", ">=3.11,<3.13", True),
        ("3.13.1", ">=3.11, <3.13", False),
        ("3.12.4", "==3.12.*", True),
        ("3.12.4", "==3.12", True),  # the leniency: == compares the numbers given
        ("3.11.7", "!=3.11", False),
        ("3.12.4", "3.12", True),
        ("3.13.0", "3.12", False),
        ("3.12.4", "~=3.12.1", True),
        ("3.13.0", "~=3.12.1", False),
        ("3.13.0", "~=3.12", True),
        ("3.11.7", ">3.11", True),
        ("3.11.0", ">3.11", False),
        ("3.11.0", "<=3.11", True),
        ("3.14.0rc1", ">=3.14", True),
        ("3.11.7", "", True),
    ],
)
def test_satisfies(version, requirement, expected):
    assert satisfies(version, requirement) is expected


@pytest.mark.parametrize("requirement", ["python3", ">=three", ">=3.11.*", "3.11 or 3.12"])
def test_an_unreadable_requirement_is_a_clear_error(requirement):
    with pytest.raises(RuntimeFailure, match="Python version requirement|goes only with"):
        satisfies("3.11.7", requirement)


def test_choose_prefers_the_newest_fitting_and_lists_all_when_none_fits():
    found = [fake("3.13.1", "/a/python3.13"), fake("3.12.3", "/b/python3.12")]
    assert choose(">=3.11", found).version == "3.13.1"
    assert choose("<3.13", found).version == "3.12.3"
    with pytest.raises(RuntimeFailure) as caught:
        choose(">=3.99", found)
    message = str(caught.value)
    assert "'>=3.99'" in message
    assert "cpython 3.13.1 at /a/python3.13" in message
    assert "cpython 3.12.3 at /b/python3.12" in message


def test_discover_finds_the_interpreter_running_conveyor_and_nothing_is_downloaded():
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    found = discover(uv_binary(), environment)
    own = Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))
    mine = [i for i in found if i.executable == own]
    assert mine, found
    assert mine[0].version == ".".join(str(n) for n in sys.version_info[:3])
    assert mine[0].implementation == sys.implementation.name
    assert len({i.executable for i in found}) == len(found)  # one entry per installation
    # Preferred when it fits, whatever else is installed.
    assert choose(f">={sys.version_info.major}.{sys.version_info.minor}", found) == mine[0]
