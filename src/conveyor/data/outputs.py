"""Where an app writes its outputs: inside its environment's output location, never outside,
so a Test release's files never land in Prod's location."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from conveyor.data.settings import VARIABLE, settings
from conveyor.errors import DataError


def output_path(name: str, *, environ: Mapping[str, str] | None = None) -> Path:
    """The path of output ``name`` (e.g. "scores.csv" or "reports/2026/q3.html") inside the
    environment's output location; parent directories are created. Absolute names and names
    that climb out (``..``) are refused."""
    found = settings(environ)
    if not found.output:
        raise DataError(
            f"no output location is declared for environment {found.environment} "
            f"({VARIABLE} has no `output`); declare `outputs:` for it in the environments file"
        )
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise DataError(
            f"output name {name!r} must be a relative path inside the output location, without `..`"
        )
    root = Path(found.output).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):  # a symbolic link inside pointing elsewhere
        raise DataError(f"output {name!r} resolves outside {root}; refusing to write there")
    os.makedirs(target.parent, exist_ok=True)
    return target
