"""`conveyor data check`: prove that read-only data connections cannot write."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.exit_codes import ExitCode


@click.group("data")
def data_group() -> None:
    """The environments' data connections (declared in the environments file)."""


@data_group.command("check")
@click.option("--env", "environment", help="Only this environment. Default: all you can see.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def check_command(ctx: click.Context, environment: str | None, as_json: bool) -> int:
    """Connect with each read-only connection's own login and prove the database refuses it
    every write: not a superuser, no BYPASSRLS, no INSERT/UPDATE/DELETE/TRUNCATE on any table
    it can see, no CREATE on a schema, also through roles it inherits or can SET ROLE to.

    Each privilege that makes a connection unsafe is named with the SQL that removes it.
    Exit code 1 when a connection is unsafe or could not be checked. The server runs the same
    check before a release uses a read-only connection, and refuses an unsafe one."""
    found = client_of(ctx).data_check(environment)
    if as_json:
        output.as_json(found)
    elif not found:
        output.info("no read-only data connections to check")
    else:
        output.table(
            ["ENV", "CONNECTION", "LOGIN", "VERDICT"],
            [[c["environment"], c["connection"], c["login"] or "-", c["verdict"]] for c in found],
        )
        for c in found:
            if c["note"]:
                output.info(f"{c['environment']}/{c['connection']}: {c['note']}")
            for problem in c["problems"]:
                output.info(f"{c['environment']}/{c['connection']}: {problem['privilege']}")
                output.info(f"  fix: {problem['fix']}")
    bad = [c for c in found if c["verdict"] in ("unsafe", "error")]
    return ExitCode.FAILURE if bad else ExitCode.OK
