"""`conveyor drift` and `conveyor repair`: runtimes against their locks, the server against its
environments file."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.environments import changes_from
from conveyor.cli.exit_codes import ExitCode
from conveyor.cli.progress import follow_operation


@click.command("drift")
@click.option("--env", "environment", help="Only the runtimes of this environment's releases.")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also compare the server's environments with this environments file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def drift_command(
    ctx: click.Context, environment: str | None, file: Path | None, as_json: bool
) -> int:
    """Check every runtime a live release runs on against its lock: distributions missing,
    extra or at another version, and files changed against their RECORD hashes (a package
    installed by hand, a file edited in place); with --file, the server's environments against
    the file. Exit 0 no drift, 2 drift found, 1 error. `conveyor repair` fixes runtimes."""
    client = client_of(ctx)
    found = client.drift(environment)
    changes = []
    if file is not None:
        changes = changes_from(client.environments_state(), file)
    drifted = found["drifted"] or bool(changes)
    if as_json:
        output.as_json({**found, "environments": [c.describe() for c in changes]})
        return ExitCode.DIFFERENCES if drifted else ExitCode.OK
    for runtime in found["runtimes"]:
        users = ", ".join(f"{r['app']}/{r['environment']}" for r in runtime["releases"])
        output.info(runtime["summary"].splitlines()[0] + f" — used by {users}")
        for line in runtime["summary"].splitlines()[1:]:
            output.info(line)
    if not found["runtimes"]:
        output.info("no live releases, so no runtimes to check")
    if file is not None:
        if changes:
            output.info(f"the server's environments differ from {file}:")
            for change in changes:
                output.info("  " + change.describe())
        else:
            output.info(f"the server's environments match {file}")
    if drifted:
        output.info(
            "drift found"
            + ("; `conveyor repair` rebuilds drifted runtimes" if found["drifted"] else "")
        )
    return ExitCode.DIFFERENCES if drifted else ExitCode.OK


@click.command("repair")
@click.option("--env", "environment", help="Only the runtimes of this environment's releases.")
@click.pass_context
def repair_command(ctx: click.Context, environment: str | None) -> int:
    """Rebuild each drifted runtime from its lock and move its live releases onto it with a
    blue-green switch (each a release of kind `repair`, checks included)."""
    client = client_of(ctx)
    return follow_operation(client, client.repair(environment))
