"""Conveyor's app-facing library as every runtime carries it: ``conveyor.config``,
``conveyor.data``, ``conveyor.outputs_server`` and what they import of Conveyor (its package root
and ``conveyor.errors``), copied into the runtime's ``conveyor-lib`` directory and put on its path
with a .pth file, so apps import them without listing Conveyor among their requirements.

``conveyor.runtime.builds`` adds the library to each runtime it builds, and its digest is part of
every runtime's id: a new version of the library makes new runtimes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

import conveyor
from conveyor.errors import RuntimeFailure

LIBRARY_DIR = "conveyor-lib"
#: What of Conveyor an app's runtime gets: the package root, its errors, the config and data
#: libraries, and the server of reports' and jobs' outputs.
LIBRARY_FILES = ("__init__.py", "errors.py", "py.typed", "config", "data", "outputs_server.py")
PTH_FILE = "_conveyor_lib.pth"


def add_library(venv: Path) -> None:
    """Copy Conveyor's app-facing modules into the runtime and put them on its path with a .pth
    file. A relative entry, resolved against site-packages, so the runtime can be renamed."""
    source = Path(conveyor.__file__).parent
    target = venv / LIBRARY_DIR / "conveyor"
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in LIBRARY_FILES:
        item = source / name
        if item.is_dir():
            shutil.copytree(item, target / name, ignore=ignore)
        elif item.is_file():
            shutil.copy2(item, target / name)
    site_packages = sorted(venv.glob("lib/python*/site-packages"))
    if len(site_packages) != 1:
        raise RuntimeFailure(f"cannot find the site-packages of the runtime being built ({venv})")
    relative = os.path.relpath(venv / LIBRARY_DIR, site_packages[0])
    (site_packages[0] / PTH_FILE).write_text(relative + "\n", encoding="utf-8")


@functools.cache
def library_digest() -> str:
    """sha256 of the app-facing library a runtime gets (LIBRARY_FILES, .py files only)."""
    root = Path(conveyor.__file__).parent
    digest = hashlib.sha256()
    for name in LIBRARY_FILES:
        item = root / name
        files = sorted(item.rglob("*.py")) if item.is_dir() else [item]
        for path in files:
            if path.suffix == ".py":
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
