"""`conveyor access set|show`: who may view an app in each environment."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of


@click.group("access")
def access_group() -> None:
    """Who may view an app: public, signed-in (anyone with a console sign-in), or named users
    and groups. The proxy enforces it: an anonymous visitor is sent to sign in and back; a
    signed-in user without access gets a 403 page; WebSockets are checked too."""


@access_group.command("set")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.argument("access", metavar="(public|signed-in|NAME[,NAME...])")
@click.pass_context
def set_command(ctx: click.Context, app: str, environment: str, access: str) -> None:
    """Say who may view APP in ENV, from the next request on."""
    done = client_of(ctx).set_access(app, environment, access)
    output.info(f"{app} in {environment}: {done['access']}")


@access_group.command("show")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def show_command(ctx: click.Context, app: str, as_json: bool) -> None:
    """Who may view APP in each environment you can see."""
    found = client_of(ctx).access(app)
    if as_json:
        output.as_json(found)
        return
    output.table(["ENV", "WHO MAY VIEW"], [[env, who] for env, who in found.items()])
