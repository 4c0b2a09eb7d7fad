"""`conveyor audit [verify|export]`: the MAC-chained record of every change (admins only)."""

from __future__ import annotations

import json

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of


@click.group("audit", invoke_without_command=True)
@click.option("--limit", default=50, show_default=True, help="How many recent events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def audit_group(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show recent audit events (`conveyor audit verify` checks the whole chain)."""
    if ctx.invoked_subcommand is not None:
        return
    events = client_of(ctx).audit(limit)
    if as_json:
        output.as_json(events)
        return
    output.table(
        ["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAILS"],
        [
            [
                str(e["seq"]),
                e["at"],
                e["actor"],
                e["action"],
                e["subject"],
                json.dumps(e["details"], sort_keys=True)[:60],
            ]
            for e in events
        ],
    )


@audit_group.command("verify")
@click.pass_context
def verify_command(ctx: click.Context) -> int:
    """Recompute the chain of MACs: any edited, removed or reordered event is reported, by its
    number (exit 1). Events from before the server keyed its chain are checked with the older,
    unkeyed rule and counted separately."""
    result = client_of(ctx).verify_audit()
    if result["intact"]:
        unkeyed = (
            f" ({result['unkeyed']} written before the upgrade, checked with the unkeyed hash)"
            if result["unkeyed"]
            else ""
        )
        output.info(f"audit log intact: {result['events']} events, MAC chain verified{unkeyed}")
        return 0
    for problem in result["problems"]:
        output.error(problem)
    return 1


@audit_group.command("export")
@click.option("--since", default=0, show_default=True, help="Only events after this number.")
@click.pass_context
def export_command(ctx: click.Context, since: int) -> None:
    """Write audit events as JSON lines, each with its MAC, for shipping to another store.

    Keep the last exported number and pass it as --since next time; comparing a store's copy
    with the server's later shows events removed since."""
    for line in client_of(ctx).export_audit(since):
        click.echo(line, nl=False)
