"""The server's home is private to the user it runs as: the directory 0700 and the files at its
top (the metadata database, the keys) 0600, whatever the umask was when they were made. A home
others can read or write is fixed on start when the server may change it, and refused with the
command that fixes it when it may not."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conveyor.errors import InvalidInput

_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def secure_home(home: Path) -> list[str]:
    """Make ``home`` private (creating it if need be); return what was changed, as sentences."""
    changed: list[str] = []
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & _OTHERS:
        _private(home, 0o700, f"chmod 700 {home}")
        changed.append(f"made {home} private to its owner (it was {mode:04o}, now 0700)")
    for entry in sorted(home.iterdir()):
        info = entry.lstat()
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & _OTHERS:
            _private(entry, 0o600, f"chmod 600 {entry}")
            changed.append(f"made {entry.name} private (it was {stat.S_IMODE(info.st_mode):04o})")
    return changed


def _private(path: Path, mode: int, command: str) -> None:
    try:
        os.chmod(path, mode)
    except PermissionError:
        raise InvalidInput(
            f"{path} can be read or written by other users, and this server may not change "
            f"that; run `{command}` as its owner, then start the server again"
        ) from None
