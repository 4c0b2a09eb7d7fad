"""Following an operation on the server: each log line as it is written, then the outcome."""

from __future__ import annotations

from typing import Any

import click

from conveyor.cli import output
from conveyor.cli.exit_codes import ExitCode
from conveyor.client import Client


def follow_operation(client: Client, answer: dict[str, Any], as_json: bool = False) -> int:
    """Show a started operation's progress until it ends; exit code 0 when it succeeded."""
    operation = answer.get("operation")
    if operation is None:  # nothing to do, e.g. the bundle is already live there
        if as_json:
            output.as_json(answer)
        else:
            output.info(str(answer.get("message", "")))
        return ExitCode.OK
    if not as_json:
        if operation["app"] == "*":  # one operation over many apps, e.g. a repair
            where = operation["environment"]
            scope = "every environment" if where == "*" else where
            what = f"{operation['kind']} in {scope}"
        else:
            what = f"{operation['kind']} of {operation['app']} to {operation['environment']}"
        click.echo(f"operation {operation['id']}: {what}", err=True)
    finished = client.follow(
        operation["id"], (lambda line: None) if as_json else (lambda line: click.echo("  " + line))
    )
    if as_json:
        output.as_json(finished)
    elif finished["state"] == "succeeded":
        output.info(click.style("✓ ", fg="green", bold=True) + finished["result"])
    else:
        output.error(finished["result"] or f"operation {finished['id']} {finished['state']}")
    return ExitCode.OK if finished["state"] == "succeeded" else ExitCode.FAILURE
