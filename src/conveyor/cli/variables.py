"""`conveyor vars list|set|unset APP --env ENV`: variables and secrets per app and environment."""

from __future__ import annotations

import sys

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of

ENV = click.option("--env", "environment", required=True, help="Environment.")


@click.group("vars")
def vars_group() -> None:
    """Variables and secrets an app gets in an environment (from its next release on).

    Secrets are write-only: listings and diffs show them masked, and their values are never
    printed, logged or put in the audit log."""


@vars_group.command("list")
@click.argument("app")
@ENV
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def list_command(ctx: click.Context, app: str, environment: str, as_json: bool) -> None:
    """List APP's variables in ENV (secret values masked)."""
    found = client_of(ctx).variables(app, environment)
    if as_json:
        output.as_json(found)
    elif not found:
        output.info(f"{app} has no variables in {environment}")
    else:
        output.table(
            ["NAME", "VALUE", "SECRET", "SET BY"],
            [[v["name"], v["value"], "yes" if v["secret"] else "", v["updated_by"]] for v in found],
        )


@vars_group.command("set")
@click.argument("app")
@click.argument("assignment", metavar="NAME=VALUE")
@ENV
@click.option("--secret", is_flag=True, help="Write-only: never shown again.")
@click.pass_context
def set_command(
    ctx: click.Context, app: str, assignment: str, environment: str, secret: bool
) -> None:
    """Set NAME=VALUE for APP in ENV. For a secret, give NAME alone to be asked for the value
    without echo, or to read it from standard input when piped (so it stays out of shell
    history)."""
    name, equals, value = assignment.partition("=")
    if not equals:
        if not secret:
            raise click.UsageError("give NAME=VALUE (or --secret NAME to be asked for the value)")
        if sys.stdin.isatty():
            value = click.prompt(f"value of {name}", hide_input=True)
        else:  # piped: `printf %s "$KEY" | conveyor vars set APP NAME --secret --env prod`
            value = sys.stdin.read().removesuffix("\n")
            if not value:
                raise click.UsageError(f"no value for {name} on standard input")
    client_of(ctx).set_variable(app, environment, name, value, secret)
    kind = "secret" if secret else "variable"
    output.info(f"set {kind} {name} for {app} in {environment}; it applies from the next release")


@vars_group.command("unset")
@click.argument("app")
@click.argument("name")
@ENV
@click.pass_context
def unset_command(ctx: click.Context, app: str, name: str, environment: str) -> None:
    """Remove NAME from APP in ENV (from the next release on)."""
    client_of(ctx).unset_variable(app, environment, name)
    output.info(f"removed {name} from {app} in {environment}")
