"""`conveyor deploy`, `promote`, `approve` and `rollback`: the pipeline, with live progress."""

from __future__ import annotations

from pathlib import Path

import click

from conveyor.bundles.build import build_bundle
from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.progress import follow_operation
from conveyor.domain.policy import bundle_alias

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.command("deploy")
@click.argument("path", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--env", "environment", default="dev", show_default=True, help="Environment.")
@JSON
@click.pass_context
def deploy_command(ctx: click.Context, path: Path, environment: str, as_json: bool) -> int:
    """Build the bundle of the app in PATH, upload it unless the server has it, and release it
    into ENV (default dev) with live progress.

    The release starts beside the live one, passes its checks (health, smoke, tests) on its own
    address, and only then takes traffic; if anything fails, the live release keeps serving.
    """
    client = client_of(ctx)
    built = build_bundle(path, progress=output.progress, warn=output.warn)
    output.progress(f"lock: {built.lock.note}")
    alias = bundle_alias(built.id)
    if client.has_bundle(built.spec.name, built.id):
        click.echo(f"... the server already has bundle {alias}", err=True)
    else:
        click.echo(f"... uploading bundle {alias} ({built.size / 1024:.1f} KB)", err=True)
        client.upload(built.archive, built.provenance)
    answer = client.deploy(built.spec.name, built.id, environment)
    return follow_operation(client, answer, as_json)


@click.command("promote")
@click.argument("app")
@click.option("--to", "to", help="Target environment. Default: the next one with something new.")
@click.option("--bundle", help="Bundle id or alias. Default: the one live upstream.")
@JSON
@click.pass_context
def promote_command(
    ctx: click.Context, app: str, to: str | None, bundle: str | None, as_json: bool
) -> int:
    """Release into an environment exactly the bundle verified in the one before it.

    Prod takes only bundles whose checks passed in Test (exit code 3 when refused)."""
    client = client_of(ctx)
    return follow_operation(client, client.promote(app, to, bundle), as_json)


@click.command("rollback")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment to roll back.")
@click.option("--to", "to_release", type=int, help="Release id. Default: the previous live one.")
@JSON
@click.pass_context
def rollback_command(
    ctx: click.Context, app: str, environment: str, to_release: int | None, as_json: bool
) -> int:
    """Release again a bundle that was live in ENV before (default: the previous one)."""
    client = client_of(ctx)
    return follow_operation(client, client.rollback(app, environment, to_release), as_json)


@click.command("approve")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment the approval is for.")
@click.option("--bundle", help="Bundle id or alias. Default: the one live upstream of ENV.")
@click.option("--comment", default="", help="Why, for the audit log.")
@JSON
@click.pass_context
def approve_command(
    ctx: click.Context,
    app: str,
    environment: str,
    bundle: str | None,
    comment: str,
    as_json: bool,
) -> None:
    """Sign off a bundle for ENV (environments whose policy asks for approvals)."""
    result = client_of(ctx).approve(app, environment, bundle, comment)
    if as_json:
        output.as_json(result)
    else:
        output.info(
            f"approved bundle {bundle_alias(result['bundle'])} of {app} for {environment} "
            f"(by {result['by']})"
        )
