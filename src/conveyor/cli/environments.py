"""`conveyor plan` and `conveyor apply`: the server's environments as code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.exit_codes import ExitCode
from conveyor.domain.environments import (
    Change,
    environment_from_dict,
    environment_to_dict,
    plan_changes,
)
from conveyor.errors import Conflict
from conveyor.services.environments_file import read_environments

FILE = click.argument(
    "file",
    default="environments.yml",
    type=click.Path(dir_okay=False, path_type=Path),
)


@click.command("plan")
@FILE
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def plan_command(ctx: click.Context, file: Path, as_json: bool) -> int:
    """Show exactly what `conveyor apply FILE` would change on the server's environments
    (order, listeners, policies, variables, secret references, data connections, outputs).
    Secret values never appear: the file holds only references. Exit 0 no changes, 2 changes,
    1 error."""
    changes, state = _plan(ctx, file)
    if as_json:
        output.as_json(
            {"fingerprint": state["fingerprint"], "changes": [c.__dict__ for c in changes]}
        )
    else:
        _show(changes, file)
        if changes:
            output.info(
                f"to apply exactly this plan: conveyor apply {file} --expect "
                f"{str(state['fingerprint'])[:16]}"
            )
    return ExitCode.DIFFERENCES if changes else ExitCode.OK


@click.command("apply")
@FILE
@click.option(
    "--expect",
    metavar="FINGERPRINT",
    help="Apply only if the server is still as `conveyor plan` saw it (the fingerprint it "
    "printed); without it, the plan shown just before applying is the one applied.",
)
@click.pass_context
def apply_command(ctx: click.Context, file: Path, expect: str | None) -> int:
    """Make the server's environments exactly what FILE declares, in one transaction with an
    audit event. Shows the plan first; refused if the server's environments change between
    that plan and the apply. From then on the file manages them: ad-hoc policy changes through
    the API are refused."""
    changes, state = _plan(ctx, file)
    fingerprint = str(state["fingerprint"])
    if expect is not None and not fingerprint.startswith(expect):
        raise Conflict(
            "the server's environments changed since that plan was made; run `conveyor plan` "
            "again, look at it, then apply"
        )
    _show(changes, file)
    desired = [environment_to_dict(e) for e in read_environments(file)]
    result = client_of(ctx).apply_environments(desired, fingerprint, str(file))
    for note in result["notes"]:
        output.info(f"  {note}")
    output.info(
        f"applied {len(result['changes'])} change(s); {file} now manages the environments"
        if result["changes"]
        else f"nothing to change; {file} manages the environments"
    )
    return ExitCode.OK


def _plan(ctx: click.Context, file: Path) -> tuple[list[Change], dict[str, object]]:
    state = client_of(ctx).environments_state()
    return changes_from(state, file), state


def changes_from(state: dict[str, Any], file: Path) -> list[Change]:
    """What applying ``file`` would change on a server whose environments state is ``state``
    (as GET /environments/state gives it); `plan`, `apply` and `drift --file` all ask this."""
    current = [environment_from_dict(e) for e in state["environments"]]
    return plan_changes(current, read_environments(file))


def _show(changes: list[Change], file: Path) -> None:
    if not changes:
        output.info(f"the server's environments match {file}: no changes")
        return
    output.info(f"applying {file} would make {len(changes)} change(s):")
    for change in changes:
        output.info("  " + change.describe())
