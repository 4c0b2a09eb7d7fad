"""Looking into runtimes from tests: running code in one, finding files left writable."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path


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
