"""What the environment gives an app: its data connections and its output location, as JSON in
``CONVEYOR_DATA`` (written by the server for each release; set it yourself to run an app the
same way outside Conveyor)::

    {"environment": "test",
     "output": "/srv/conveyor/outputs/test/forecast-api",
     "connections": {"warehouse": {"url": "postgresql://...", "mode": "read-only",
                                   "role": "reporting_ro"}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.errors import DataError

READ_ONLY = "read-only"
READ_WRITE = "read-write"
MODES = (READ_ONLY, READ_WRITE)
VARIABLE = "CONVEYOR_DATA"


@dataclass(frozen=True)
class Connection:
    name: str
    url: str
    mode: str = READ_ONLY
    role: str | None = None  # PostgreSQL: SET ROLE to it on every connection

    @property
    def read_only(self) -> bool:
        return self.mode == READ_ONLY


@dataclass(frozen=True)
class DataSettings:
    environment: str
    output: str | None = None
    connections: Mapping[str, Connection] = field(default_factory=dict)


def settings(environ: Mapping[str, str] | None = None) -> DataSettings:
    """The data settings of the environment the app runs in."""
    environ = os.environ if environ is None else environ
    raw = environ.get(VARIABLE)
    environment = environ.get("CONVEYOR_ENV", "default")
    if not raw:
        return DataSettings(environment)
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise DataError(
            f"{VARIABLE} is not valid JSON ({exc}); Conveyor sets it for each release"
        ) from None
    if not isinstance(parsed, dict):
        raise DataError(f"{VARIABLE} must be a JSON object")
    connections = {}
    for name, spec in (parsed.get("connections") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise DataError(f"data connection {name!r} in {VARIABLE} has no url")
        mode = spec.get("mode", READ_ONLY)
        if mode not in MODES:
            raise DataError(
                f"data connection {name!r} has mode {mode!r}; use {READ_ONLY} or {READ_WRITE}"
            )
        connections[name] = Connection(name, spec["url"], mode, spec.get("role"))
    return DataSettings(
        str(parsed.get("environment") or environment),
        parsed.get("output"),
        connections,
    )
