"""`conveyor audit [verify]`: the hash-chained record of every change."""

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
    """Recompute the hash chain: any edited, removed or reordered event is reported (exit 1)."""
    result = client_of(ctx).verify_audit()
    if result["intact"]:
        output.info(f"audit log intact: {result['events']} events, hash chain verified")
        return 0
    for problem in result["problems"]:
        output.error(problem)
    return 1
