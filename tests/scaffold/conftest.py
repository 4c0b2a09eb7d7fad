"""Fixtures for `conveyor init`: small real projects in temporary directories, and the command
run the way the console script runs it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.cli import cli, main
from conveyor.cli.init import init_command

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
def init(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """init(*args) -> (exit code, stdout, stderr) of `conveyor init ARGS`, run through
    conveyor.cli.main so errors are shown as a person sees them. Until `init` is registered in
    the `conveyor` group, it is added for the test and taken away afterwards."""
    added = "init" not in cli.commands
    if added:
        cli.add_command(init_command)

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["init", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    try:
        yield _run
    finally:
        if added:
            cli.commands.pop("init", None)
