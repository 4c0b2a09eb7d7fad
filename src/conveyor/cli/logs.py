"""`conveyor logs APP --env ENV [-f]`: what the app's live release prints."""

from __future__ import annotations

import click

from conveyor.cli.connection import client_of


@click.command("logs")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.option("--release", type=int, help="A release id. Default: the live release.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until Ctrl-C.")
@click.pass_context
def logs_command(
    ctx: click.Context, app: str, environment: str, release: int | None, follow: bool
) -> None:
    """Print the output (stdout and stderr) of the app's release in ENV."""
    for text in client_of(ctx).logs(app, environment, follow=follow, release=release):
        click.echo(text, nl=False)
