"""The Python interpreters on this machine, and the one a runtime is built on.

Candidates come from uv's discovery (with downloads off, so asking never fetches a Python), the
interpreter Conveyor itself runs on, and ``python3.X`` on ``PATH``. Each candidate is asked for
its version and platform by running it, because a name on ``PATH`` can be a shim for something
else (pyenv's shims are) or not run at all; candidates that do not answer are skipped, and
several names for one installation count once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import RuntimeFailure

# Printed by each candidate about itself. The base executable, so a venv's python (Conveyor's
# own, for one) stands for the installation it was made from.
_PROBE = """
import json, os, platform, sys, sysconfig
print(json.dumps({
    "executable": os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable),
    "version": platform.python_version(),
    "implementation": sys.implementation.name,
    "platform": sysconfig.get_platform(),
    "abi": sysconfig.get_config_var("SOABI") or "",
}))
"""
_CLAUSE = re.compile(r"^(~=|===|==|!=|<=|>=|<|>)?\s*(\d+(?:\.\d+)*)(\.\*)?$")
_PROBE_TIMEOUT = 20.0


@dataclass(frozen=True)
class Interpreter:
    """One Python installation, identified by its real executable."""

    executable: Path
    version: str  # full: "3.11.7"
    implementation: str  # "cpython", "pypy"
    platform: str  # sysconfig.get_platform(): "linux-x86_64"
    abi: str  # SOABI: "cpython-311-x86_64-linux-gnu"; tells free-threaded and musl builds apart

    @property
    def platform_tag(self) -> str:
        """What, besides the version, decides which wheels fit this interpreter."""
        return f"{self.implementation}-{self.platform}-{self.abi}"

    def describe(self) -> str:
        return f"{self.implementation} {self.version} at {self.executable}"


def discover(uv: str, environment: Mapping[str, str]) -> list[Interpreter]:
    """Every interpreter on this machine that answers, newest first; nothing is downloaded.

    ``environment`` is what uv runs with; it should set ``UV_PYTHON_DOWNLOADS=never``."""
    candidates = _unique([*_uv_candidates(uv, environment), *_path_candidates()])
    with ThreadPoolExecutor(max_workers=8) as pool:
        probed = list(pool.map(_probe, candidates))
    found: dict[Path, Interpreter] = {}
    for interpreter in probed:
        if interpreter is not None and interpreter.executable not in found:
            found[interpreter.executable] = interpreter
    return sorted(found.values(), key=lambda i: _release(i.version), reverse=True)


def choose(requirement: str, interpreters: Iterable[Interpreter]) -> Interpreter:
    """The interpreter to build on: the one running Conveyor when it satisfies ``requirement``
    (so runtimes match what Conveyor was tested with), else the newest that does.

    RuntimeFailure lists the interpreters that exist when none satisfies."""
    available = list(interpreters)
    fitting = [i for i in available if satisfies(i.version, requirement)]
    if not fitting:
        listed = "\n  ".join(i.describe() for i in available) or "(none found)"
        raise RuntimeFailure(
            f"no Python on this machine satisfies the app's requirement {requirement!r} "
            f"(`python:` in conveyor.yml). Interpreters found:\n  {listed}\n"
            f"Install a Python that satisfies it on the server (e.g. `uv python install`), or "
            f"change the requirement."
        )
    own = Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))
    for interpreter in fitting:
        if interpreter.executable == own:
            return interpreter
    return fitting[0]


def satisfies(version: str, requirement: str) -> bool:
    """Whether a Python ``version`` ("3.11.7") meets ``requirement`` (">=3.11", "~=3.12.1",
    ">=3.10,<3.13", "==3.12.*", or a bare "3.12").

    PEP 440 comparisons on the release numbers, with one deliberate leniency: ``==3.11`` and
    ``!=3.11`` compare only the numbers given (as ``==3.11.*`` would), since that is what people
    mean by them for Python; a bare version means the same as ``==``. RuntimeFailure when the
    requirement cannot be read."""
    release = _release(version)
    clauses = [c.strip() for c in requirement.split(",")]
    if not any(clauses):
        return True
    for clause in clauses:
        found = _CLAUSE.match(clause)
        if not found:
            raise RuntimeFailure(
                f"{requirement!r} is not a Python version requirement (`python:` in "
                f"conveyor.yml); write one like '>=3.11' or '>=3.11,<3.14'"
            )
        operator, number, wildcard = found.group(1) or "==", found.group(2), found.group(3)
        if wildcard and operator not in ("==", "!="):
            raise RuntimeFailure(f"{clause!r} in {requirement!r}: '.*' goes only with == and !=")
        wanted = tuple(int(part) for part in number.split("."))
        if not _meets(release, operator, wanted):
            return False
    return True


def _meets(release: tuple[int, ...], operator: str, wanted: tuple[int, ...]) -> bool:
    left, right = _padded(release, wanted), _padded(wanted, release)
    if operator == "===":
        return left == right
    if operator in ("==", "!="):
        same = release[: len(wanted)] == wanted  # the leniency: "==3.11" is "==3.11.*"
        return same if operator == "==" else not same
    if operator == "~=":
        # ~=3.12.1 is >=3.12.1 and ==3.12.*; ~=3.12 is >=3.12 and ==3.*
        prefix = wanted[:-1] if len(wanted) > 1 else wanted
        return left >= right and release[: len(prefix)] == prefix
    if operator == ">=":
        return left >= right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left < right  # "<"


def _padded(numbers: tuple[int, ...], other: tuple[int, ...]) -> tuple[int, ...]:
    return numbers + (0,) * max(0, len(other) - len(numbers))


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version: "3.14.0rc1" -> (3, 14, 0)."""
    found = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in found.group(0).split(".")) if found else ()


def _uv_candidates(uv: str, environment: Mapping[str, str]) -> list[str]:
    try:
        result = subprocess.run(
            [uv, "python", "list", "--only-installed", "--output-format", "json"],
            env=dict(environment),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []  # the other candidates still count; uv's own failure shows in the build
    if result.returncode != 0:
        return []
    try:
        listed = json.loads(result.stdout)
    except json.JSONDecodeError:
        return []
    return [str(entry["path"]) for entry in listed if isinstance(entry, dict) and entry.get("path")]


def _path_candidates() -> list[str]:
    names = ["python3", *(f"python3.{minor}" for minor in range(8, 20))]
    on_path = [shutil.which(name) for name in names]
    return [sys.executable, *(path for path in on_path if path)]


def _unique(paths: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        seen.setdefault(path, None)
    return list(seen)


def _probe(candidate: str) -> Interpreter | None:
    try:
        result = subprocess.run(
            [candidate, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            return None
        answer = json.loads(result.stdout)
        return Interpreter(
            executable=Path(answer["executable"]),
            version=str(answer["version"]),
            implementation=str(answer["implementation"]),
            platform=str(answer["platform"]),
            abi=str(answer["abi"]),
        )
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None  # not a working Python: a broken shim, a stale link
