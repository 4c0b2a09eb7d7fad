"""Runtimes in tests: locks to build them from, running code in one, finding files left
writable."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.lock import resolve_lock, uv_binary


def run_in(python: Path, code: str, cwd: Path | None = None, **env: str) -> str:
    """What ``code`` prints, run by ``python`` with only PATH (and ``env``) set."""
    result = subprocess.run(
        [str(python), "-c", code],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def writable(root: Path) -> list[Path]:
    """Everything under ``root`` (itself included) that someone could write to."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        for name in [".", *subdirectories, *files]:
            path = Path(directory, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o222:
                found.append(path)
    return found


def make_lock(root: Path, requirements: str | None) -> Path:
    """conveyor.lock made by Conveyor's own lock code for a `command` app (which adds PyYAML)."""
    root.mkdir(parents=True)
    app_file = "name: tiny\ntype: command\nentrypoint: python -m http.server\n"
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
        app_file += "requirements: requirements.txt\n"
    (root / "conveyor.yml").write_text(app_file)
    lock = resolve_lock(root, read_app_file(root), progress=lambda message: None)
    return root / lock.path


def uv_project_lock(project: Path, lock_format: str) -> Path:
    """Lock ``project`` (a pyproject.toml) with `uv lock`, and export pylock.toml when that is
    the format asked for; returns the lock file."""
    uv = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    uv.pop("VIRTUAL_ENV", None)
    subprocess.run([uv_binary(), "lock"], cwd=project, env=uv, check=True, capture_output=True)
    if lock_format == "pylock.toml":
        subprocess.run(
            [uv_binary(), "export", "--frozen", "--format", "pylock.toml", "--no-emit-project"]
            + ["--no-header", "-o", "pylock.toml"],
            cwd=project,
            env=uv,
            check=True,
            capture_output=True,
        )
    return project / lock_format
