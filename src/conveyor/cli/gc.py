"""`conveyor gc`: remove what retention no longer keeps, or say what that would be."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.domain.retention import show_bytes


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines (sizes in bytes).")
@click.pass_context
def gc_command(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Remove what no live release, rollback target, bundle awaiting promotion or approval, or
    running operation needs: old releases' files and bundles, unused runtimes and the shared
    bytecode only they used, old logs and run outputs; show what and the space freed. The
    server does this daily too; its --keep-releases, --keep-runs and --keep-logs say what is
    kept. Admins only."""
    found = client_of(ctx).gc(dry_run)
    if as_json:
        output.as_json(found)
        return
    output.info(f"kept: {found['kept']}")
    for group, content in found["groups"].items():
        items = content["items"]
        if not items:
            continue
        output.info(f"{group} ({len(items)}, {show_bytes(content['bytes'])}):")
        for item in items:
            size = show_bytes(item["bytes"]) if item["bytes"] else ""
            detail = f" ({item['detail']})" if item["detail"] else ""
            failed = f" — not removed: {item['failed']}" if "failed" in item else ""
            output.info(f"  {item['what']}{detail} {size}".rstrip() + failed)
    output.info(found["summary"])
