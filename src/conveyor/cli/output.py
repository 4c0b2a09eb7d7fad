"""How the CLI prints: tables for people, JSON for machines, errors and warnings on stderr.
The CLI is the only part of Conveyor that prints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows under headers, columns aligned; long cells are not cut."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    click.echo(click.style(line(headers).rstrip(), bold=True))
    for row in rows:
        click.echo(line(row).rstrip())


def as_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def warn(message: str) -> None:
    click.echo(click.style("warning: ", fg="yellow", bold=True) + message, err=True)


def error(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)


def info(message: str) -> None:
    click.echo(message)


def progress(message: str) -> None:
    """A step of long work, as it happens (stderr, so stdout stays parseable)."""
    click.echo(f"... {message}", err=True)
