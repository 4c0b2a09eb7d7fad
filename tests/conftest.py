"""Shared fixtures: every test gets a clean process environment for the variables Conveyor reads,
and a temporary working directory, so no test sees another's config file or active name."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# One uv cache for the whole suite and across runs, so runtime builds and locks do not
# download the same wheels again (CI runs on the same machine as the sessions).
os.environ.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "conveyor-tests" / "uv"))

CONVEYOR_VARIABLES = (
    "CONVEYOR_ENV",
    "R_CONFIG_ACTIVE",
    "CONVEYOR_CONFIG_FILE",
    "R_CONFIG_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CONVEYOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="config.yml") -> path: a dedented file under tmp_path."""

    def _write(text: str, name: str = "config.yml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return _write
