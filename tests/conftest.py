"""Shared fixtures: every test gets a clean process environment for the variables Conveyor reads,
and a temporary working directory, so no test sees another's config file or active name."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

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
