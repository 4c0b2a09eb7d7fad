"""The CLI's credentials file: which server to talk to and the token for each.

``$CONVEYOR_CREDENTIALS`` or ``~/.config/conveyor/credentials.json``, readable by its owner only:

    {"default": "http://127.0.0.1:8700", "servers": {"http://127.0.0.1:8700": {"token": "cvt_..."}}}

The server writes it on its first start (for the user who started it); `conveyor login` writes
it on any other machine."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conveyor.errors import InvalidInput

DEFAULT_SERVER = "http://127.0.0.1:8700"


def credentials_path() -> Path:
    given = os.environ.get("CONVEYOR_CREDENTIALS")
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "conveyor" / "credentials.json"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"servers": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path} is not a readable credentials file ({exc}); remove it and run "
            "`conveyor login` again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise InvalidInput(f"{path} is not a Conveyor credentials file; remove it and log in again")
    return data


def save_token(server: str, token: str, *, make_default: bool = True) -> Path:
    """Remember ``token`` for ``server`` (written owner-only, replaced atomically)."""
    path = credentials_path()
    data = _read(path)
    data["servers"][server.rstrip("/")] = {"token": token}
    if make_default or "default" not in data:
        data["default"] = server.rstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(scratch, path)
    return path


def server_and_token(server: str | None = None) -> tuple[str, str | None]:
    """The server to use (given, else ``$CONVEYOR_SERVER``, else the saved default, else
    the local one) and its token (``$CONVEYOR_TOKEN`` wins over the saved one)."""
    data = _read(credentials_path())
    chosen = (
        server or os.environ.get("CONVEYOR_SERVER") or data.get("default") or DEFAULT_SERVER
    ).rstrip("/")
    token = os.environ.get("CONVEYOR_TOKEN") or data["servers"].get(chosen, {}).get("token")
    return chosen, token
