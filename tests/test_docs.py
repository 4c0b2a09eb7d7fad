"""Docs stay true to the code: the CLI reference is generated, every command is explained
somewhere besides it, and the error tree drawn in errors.py lists every error."""

from __future__ import annotations

import inspect
import runpy
from pathlib import Path

from conveyor import errors

ROOT = Path(__file__).resolve().parents[1]


def _reference_module() -> dict[str, object]:
    return runpy.run_path(str(ROOT / "docs" / "cli_reference.py"))


def test_cli_reference_is_up_to_date():
    render = _reference_module()["render"]
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(), "docs/cli.md is stale: run `make docs` and commit it"  # type: ignore[operator]


def test_every_command_is_explained_in_the_guides():
    module = _reference_module()
    from conveyor.cli import cli

    paths = [" ".join(path) for path, _ in module["commands"](cli, ("conveyor",))]  # type: ignore[operator]
    guides = "\n".join(
        path.read_text()
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        if path.name != "cli.md"
    )
    leaves = [p for p in paths if not any(other.startswith(p + " ") for other in paths)]
    missing = [p for p in leaves if p not in guides]
    assert not missing, f"commands not explained in README.md or docs/: {missing}"


def test_error_tree_in_the_docstring_lists_every_error():
    doc = errors.__doc__ or ""
    classes = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.ConveyorError)
        and value.__module__ == errors.__name__
    ]
    missing = [name for name in classes if name not in doc]
    assert not missing, f"errors.py docstring does not draw: {missing}"
    assert "ConfigWarning" in doc
