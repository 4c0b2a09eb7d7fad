"""Benchmark: building a release's runtime with Conveyor's RuntimeBuilder (uv), against the usual
`python -m venv` + `pip install --require-hashes -r` of the same pinned, hashed requirements.

The lock is examples/forecast-api/conveyor.lock: a `requirements-txt` lock (the format name
conveyor.bundles.lock gives a pinned requirements file with hashes) of 24 packages, fastapi,
pydantic-core, uvicorn, httpx and pytest among them. Everything runs in a temporary directory on
the same filesystem as the caches (so uv can hard-link from its cache), in this order:

  uv cold        ensure() in an empty CONVEYOR home with an empty uv cache: downloads included
  pip cold       venv + pip install with an empty pip cache
  uv warm        ensure() of the same lock in a second, empty CONVEYOR home sharing the uv cache
                 the cold build filled: a new machine's home, or a runtime deleted and rebuilt
  uv warm, sibling lock
                 ensure() in the first home of a different lock: the same one without pytest and
                 its dependencies (a "production" variant). Another runtime id, so a full build,
                 every wheel already in the cache
  pip warm       venv + pip install into a new venv with the pip cache the cold run filled
  uv reuse       ensure() of the first lock again: the runtime exists, nothing is installed

Every uv build includes what a release's runtime gets besides the packages: Conveyor's library
copied in, bytecode (compiled once per source file and interpreter, then linked into every
runtime that has the file: runtime/bytecode.py), an import check, and the tree made read-only.
pip compiles bytecode for every install. Each round's bytecode store sits beside its uv cache,
so "uv warm" links what "uv cold" compiled. "first start" times importing --imports in the
runtime that compiled its bytecode in place and in the one that linked it. The baseline uses
this venv's pip (a current release) through `pip --python`, in a venv made with
`--without-pip`, so it does not pay for ensurepip. Interpreter discovery (once per
server process) is timed on its own line and is not part of any build.

Cold numbers depend on the network to PyPI. Prints seconds and ratios.

    .venv/bin/python bench/runtime_build.py [--lock PATH] [--imports 'pandas, seaborn']
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _support import ROOT, machine, remove_tree
from conveyor.runtime.builds import MARKER, RuntimeBuilder, RuntimeInfo
from conveyor.runtime.interpreters import Interpreter

DEFAULT_LOCK = ROOT / "examples" / "forecast-api" / "conveyor.lock"
PYTHON_REQUIREMENT = ">=3.11"
#: Left out of the sibling lock: pytest and what only it needs.
TEST_ONLY = frozenset({"pytest", "iniconfig", "pluggy", "pygments"})


def sibling_lock(lock: Path, directory: Path) -> tuple[Path, int]:
    """The lock without TEST_ONLY's packages; and how many packages it keeps. A lock without
    any of them gets a comment instead: the same packages, another runtime id."""
    blocks: list[str] = []
    kept = 0
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock.read_text()):
        name = re.match(r"[A-Za-z0-9._-]+", block)
        if name and name.group(0).lower() in TEST_ONLY:
            continue
        kept += 1 if name else 0
        blocks.append(block)
    directory.mkdir(parents=True)
    path = directory / "conveyor.lock"
    text = "\n".join(blocks)
    if kept == packages_in(lock):
        text += "\n# a variant: the same packages, another runtime\n"
    path.write_text(text)
    return path, kept


def packages_in(lock: Path) -> int:
    return len(re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?==", lock.read_text(), re.M))


_UV_SUMMARY = re.compile(r"^(Prepared|Installed|Bytecode compiled) (\d+) \w+ in ([\d.]+)(ms|s)$")


def timed_ensure(builder: RuntimeBuilder, lock: Path) -> tuple[float, RuntimeInfo, str]:
    """Seconds for ensure(), its RuntimeInfo, and uv's own summary of the steps it timed."""
    lines: list[str] = []
    began = time.monotonic()
    info = builder.ensure(PYTHON_REQUIREMENT, lock, "requirements-txt", lines.append)
    seconds = time.monotonic() - began
    steps = []
    for line in lines:
        if line.startswith("bytecode: "):
            steps.append(line.removeprefix("bytecode: "))
        match = _UV_SUMMARY.match(line.strip())
        if match:
            step, count, value, unit = match.groups()
            took = float(value) / (1000 if unit == "ms" else 1)
            what = {
                "Prepared": "prepare (download, unzip)",
                "Installed": "link",
                "Bytecode compiled": "compile",
            }
            label = f"{count} files" if step == "Bytecode compiled" else count
            steps.append(f"{what[step]} {label} {took:.2f}")
    return seconds, info, ("uv: " + ", ".join(steps)) if steps else ""


def pip_install(interpreter: str, venv: Path, lock: Path, cache: Path) -> float:
    """Seconds for `python -m venv --without-pip` + `pip --python venv install -r lock`. pip
    keeps this machine's configuration (its index settings); only the cache is chosen here."""
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    environment.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    began = time.monotonic()
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + ["--quiet", "--require-hashes", "--cache-dir", str(cache), "-r", str(lock)],
        env=environment,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - began
    if pip.returncode != 0:
        raise SystemExit(f"pip install failed:\n{pip.stdout}{pip.stderr}")
    return seconds


def first_start(python: Path, imports: str) -> float:
    """Median seconds for the runtime's Python to import ``imports`` (what an app's start is
    mostly made of), over 5 runs."""
    times = []
    for _ in range(5):
        began = time.monotonic()
        subprocess.run([str(python), "-c", f"import {imports}"], check=True)
        times.append(time.monotonic() - began)
    return statistics.median(times)


LABELS = {
    "uv cold": "uv cold (empty uv cache)",
    "pip cold": "pip cold (empty pip cache)",
    "uv warm": "uv warm (same lock, new home)",
    "uv sibling": "uv warm (sibling lock)",
    "pip warm": "pip warm (filled pip cache)",
    "uv reuse": "uv reuse (runtime exists)",
    "start compiled": "first start, bytecode compiled in place",
    "start linked": "first start, bytecode linked",
}


def one_round(lock: Path, interpreter: Interpreter, imports: str) -> dict[str, tuple[float, str]]:
    """Every measurement once, in fresh directories and empty caches."""
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-runtime-"))
    times: dict[str, tuple[float, str]] = {}
    try:
        uv_cache, pip_cache = work / "uv-cache", work / "pip-cache"
        first = RuntimeBuilder(work / "home-a", cache_dir=uv_cache)
        second = RuntimeBuilder(work / "home-b", cache_dir=uv_cache)
        for builder in (first, second):
            builder._interpreters = [interpreter]  # discovered once, timed on its own

        seconds, info, steps = timed_ensure(first, lock)
        assert not info.reused
        times["uv cold"] = seconds, steps
        python = json.loads((info.path / MARKER).read_text())["interpreter"]

        seconds = pip_install(python, work / "pip-a", lock, pip_cache)
        times["pip cold"] = seconds, "venv --without-pip, then pip install"

        seconds, again, steps = timed_ensure(second, lock)
        assert not again.reused and again.id == info.id
        times["uv warm"] = seconds, steps
        # The first runtime compiled its bytecode in place; the second linked it.
        times["start compiled"] = first_start(info.python, imports), f"import {imports}"
        times["start linked"] = first_start(again.python, imports), f"import {imports}"

        sibling, kept = sibling_lock(lock, work / "sibling")
        seconds, other, steps = timed_ensure(first, sibling)
        assert not other.reused and other.id != info.id
        times["uv sibling"] = seconds, f"{kept} packages; " + steps

        seconds = pip_install(python, work / "pip-b", lock, pip_cache)
        times["pip warm"] = seconds, "new venv, same pip cache"

        seconds, reused, _ = timed_ensure(first, lock)
        assert reused.reused
        times["uv reuse"] = seconds, "ensure() returns reused=True"
    finally:
        remove_tree(work)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK, help="any requirements-txt lock")
    parser.add_argument(
        "--imports",
        default="fastapi, yaml",
        help="what a first start imports (e.g. 'pandas, seaborn, shiny'); default: fastapi, yaml",
    )
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    args = parser.parse_args()
    lock: Path = args.lock.resolve()
    if not lock.is_file():
        raise SystemExit(f"no lock at {lock}")
    pip_version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True
    ).stdout.split(" from ")[0]
    from uv import find_uv_bin

    uv_version = subprocess.run([find_uv_bin(), "--version"], capture_output=True, text=True)
    print(f"machine: {machine()}")
    shown = lock.relative_to(ROOT) if lock.is_relative_to(ROOT) else lock
    print(f"lock: {shown} (requirements-txt, {packages_in(lock)} pinned packages)")
    print(f"sibling lock: the same without {', '.join(sorted(TEST_ONLY))}")
    print(f"tools: {uv_version.stdout.strip()}, {pip_version}")

    # Discovery runs every Python on the machine, once per builder (once per server process);
    # timed here on its own, through the builder's own (private) method.
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-discovery-") as tmp:
        began = time.monotonic()
        interpreter = RuntimeBuilder(Path(tmp))._interpreter_for(PYTHON_REQUIREMENT)
        discovery = time.monotonic() - began
    print(f"interpreter: {interpreter.describe()}")
    print(f"interpreter discovery (once per builder; not in the times below): {discovery:.2f} s")

    rounds = [one_round(lock, interpreter, args.imports) for _ in range(args.rounds)]
    median = {key: statistics.median(r[key][0] for r in rounds) for key in LABELS}
    print(f"\nmedian of {args.rounds} round(s), each in fresh directories with empty caches:\n")
    width = max(len(label) for label in LABELS.values())
    print(f"{'':{width}} {'median s':>9} {'min s':>7} {'max s':>7}   last round's details (s)")
    for key, label in LABELS.items():
        values = [r[key][0] for r in rounds]
        note = rounds[-1][key][1]
        print(f"{label:{width}} {median[key]:9.4f} {min(values):7.4f} {max(values):7.4f}   {note}")
    print()
    print(f"ratio: pip cold / uv cold   = {median['pip cold'] / median['uv cold']:6.1f}x")
    print(f"ratio: uv cold / uv warm    = {median['uv cold'] / median['uv warm']:6.1f}x")
    print(f"ratio: uv warm / uv sibling = {median['uv warm'] / median['uv sibling']:6.1f}x")
    print(f"ratio: uv warm / uv reuse   = {median['uv warm'] / median['uv reuse']:6.0f}x")
    print(f"ratio: pip warm / uv reuse  = {median['pip warm'] / median['uv reuse']:6.0f}x")
    started = median["start linked"] / median["start compiled"]
    print(f"ratio: first start linked / compiled in place = {started:.2f}")
    print(f"ratio: pip warm / conveyor warm = {median['pip warm'] / median['uv warm']:.1f}x")


if __name__ == "__main__":
    main()
