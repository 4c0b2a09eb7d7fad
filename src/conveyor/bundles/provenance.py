"""Where a bundle came from: git commit, branch, dirty flag, author and time. Stored beside the
bundle, never inside its id, so one tree built on two branches is one bundle."""

from __future__ import annotations

import getpass
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def provenance(directory: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "built_by": _user(),
        "git": None,
    }
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is not None:
        branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
        status = _git(directory, "status", "--porcelain", "--untracked-files=normal", "--", ".")
        info["git"] = {
            "commit": commit,
            "branch": None if branch in (None, "HEAD") else branch,
            "dirty": bool(status),
            "author": _git(directory, "log", "-1", "--format=%an <%ae>"),
        }
    return info


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
