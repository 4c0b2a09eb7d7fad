"""Fixtures for `conveyor lint`: small real projects and notebooks in temporary directories,
and the command run the way the console script runs it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.lint import Finding, lint_source

Project = Callable[..., Path]


def findings(code: str) -> list[Finding]:
    """The findings in a module holding ``code`` (dedented)."""
    return lint_source(textwrap.dedent(code).lstrip(), "app.py")


def only(code: str) -> Finding:
    """The one finding in ``code``."""
    found = findings(code)
    assert len(found) == 1, [(f.where, f.literal) for f in found]
    return found[0]


def notebook_text(*cells: str | list[str] | tuple[str, str], language: str = "python") -> str:
    """A notebook whose cells are code cells (source as str or list of lines), or
    ("markdown", text)."""
    made = []
    for cell in cells:
        if isinstance(cell, tuple):
            made.append({"cell_type": cell[0], "metadata": {}, "source": cell[1]})
        else:
            made.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": cell,
                }
            )
    document = {
        "cells": made,
        "metadata": {
            "kernelspec": {"display_name": language, "language": language, "name": language},
            "language_info": {"name": language},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document, indent=1)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """project({path: text}) -> a directory holding those files (texts dedented)."""

    def _make(files: dict[str, str], *, where: str = "app") -> Path:
        root = tmp_path / where
        root.mkdir(parents=True, exist_ok=True)
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return root

    return _make


@pytest.fixture
def conveyor_lint(
    conveyor: Callable[..., tuple[int, str, str]],
) -> Callable[..., tuple[int, str, str]]:
    """conveyor_lint(*args) -> (exit code, stdout, stderr) of `conveyor lint ARGS`."""
    return lambda *args: conveyor("lint", *args)
