"""Fixtures for `conveyor init`: small real projects in temporary directories, and the command
run the way the console script runs it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

Project = Callable[..., Path]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """project({path: text}, where="hello", git=False) -> a directory holding those files."""

    def _make(files: dict[str, str], *, where: str = "hello", git: bool = False) -> Path:
        root = tmp_path / where
        root.mkdir(parents=True, exist_ok=True)
        if git:
            (tmp_path / ".git").mkdir(exist_ok=True)
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return root

    return _make


@pytest.fixture
def init(conveyor: Callable[..., tuple[int, str, str]]) -> Callable[..., tuple[int, str, str]]:
    """init(*args) -> (exit code, stdout, stderr) of `conveyor init ARGS`."""
    return lambda *args: conveyor("init", *args)
