"""`conveyor token create|list|revoke`: API tokens, each acting as one user."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("token")
def token_group() -> None:
    """API tokens. Each acts as one user; the server keeps only its hash, so a token is shown
    once, when it is created."""


@token_group.command("create")
@click.option("--user", help="Whose token. Default: yours. For someone else, only an admin.")
@click.option(
    "--expires",
    type=int,
    metavar="DAYS",
    help="Days until it stops working (default 90; 0: never, admins only).",
)
@JSON
@click.pass_context
def create_command(
    ctx: click.Context, user: str | None, expires: int | None, as_json: bool
) -> None:
    """Create a token and print it once (JSON: `id` and `token`)."""
    created = client_of(ctx).create_token(user, expires)
    if as_json:
        output.as_json(created)
        return
    until = f"until {created['expires'][:10]}" if created["expires"] else "with no expiry"
    output.info(
        f"token {created['id']} for {created['user']}, valid {until} (shown once; "
        f"`conveyor login` with it):",
    )
    output.info(created["token"])


@token_group.command("list")
@JSON
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Your tokens (an admin sees everyone's): id, user, created, expires, last used. Never the
    tokens themselves."""
    found = client_of(ctx).tokens()
    if as_json:
        output.as_json(found)
        return
    output.table(
        ["ID", "USER", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        [
            [
                str(t["id"]),
                t["user"],
                t["created"][:16],
                (t["expires"] or "never")[:16],
                (t["last_used"] or "-")[:16],
                "revoked" if t["revoked"] else "active",
            ]
            for t in found
        ],
    )


@token_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@click.pass_context
def revoke_command(ctx: click.Context, token_id: int) -> None:
    """Revoke token ID (yours; an admin may revoke anyone's): it stops working at once."""
    revoked = client_of(ctx).revoke_token(token_id)
    output.info(f"revoked token {revoked['id']} of {revoked['user']}")
