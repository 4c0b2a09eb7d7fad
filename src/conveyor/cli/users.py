"""`conveyor users` and `conveyor whoami`: who may do what on the server."""

from __future__ import annotations

import sys
from typing import Any

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("users")
def users_group() -> None:
    """Users and their roles per environment (admins only).

    Roles: viewer (sees the environment's status, releases, logs), developer (deploys where
    the environment takes direct deploys, sets its variables), deployer (promotes and rolls
    back into it, sets its variables), approver (approves bundles for it). An admin may do
    everything. Give a role as ENV:ROLE, e.g. prod:approver."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ENV:ROLE",
    help="A role in an environment; repeat for more. Default: each environment's default roles "
    "for new users (dev:developer, test:viewer, prod:viewer unless the environments say else).",
)
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read a console password for the user from standard input (one line).",
)
@JSON
@click.pass_context
def add_command(
    ctx: click.Context,
    name: str,
    roles: tuple[str, ...],
    admin: bool,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Add the user NAME. They use the CLI with a token (`conveyor token create --user NAME`)
    and the console with a password (--password-stdin, or later `conveyor users passwd`)."""
    password = _read_password(name) if password_stdin else None
    client = client_of(ctx)
    user = client.add_user(name, list(roles) or None, admin)
    if password is not None:
        client.set_password(name, password)
        user["password"] = True
    _show(user, as_json, f"added {name}")


@users_group.command("passwd")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (one line)."
)
@click.pass_context
def passwd_command(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set NAME's console password (your own; an admin anyone's). Asked for twice without
    echo, unless --password-stdin. The user's console sessions end."""
    if password_stdin:
        password = _read_password(name)
    else:
        password = click.prompt(
            f"new password for {name}", hide_input=True, confirmation_prompt=True
        )
    client_of(ctx).set_password(name, password)
    output.info(f"password of {name} set; their console sessions were ended")


@users_group.command("groups")
@click.argument("name")
@click.argument("groups", metavar="GROUP[,GROUP...]", default="")
@JSON
@click.pass_context
def groups_command(ctx: click.Context, name: str, groups: str, as_json: bool) -> None:
    """Put NAME in exactly these groups (none: leave all). Viewer access may name groups."""
    chosen = [g.strip() for g in groups.split(",") if g.strip()]
    _show(client_of(ctx).set_groups(name, chosen), as_json, f"groups of {name} set")


@users_group.command("list")
@JSON
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List users with their roles."""
    found = client_of(ctx).users()
    if as_json:
        output.as_json(found)
        return
    output.table(
        ["USER", "ADMIN", "STATE", "ROLES"],
        [
            [
                u["name"],
                "admin" if u["admin"] else "",
                "disabled" if u["disabled"] else "active",
                ", ".join(u["roles"]) or "-",
            ]
            for u in found
        ],
    )


@users_group.command("grant")
@click.argument("name")
@click.argument("role", metavar="ENV:ROLE|admin")
@JSON
@click.pass_context
def grant_command(ctx: click.Context, name: str, role: str, as_json: bool) -> None:
    """Give NAME a role in an environment (e.g. prod:approver), or `admin`."""
    _show(client_of(ctx).grant(name, role), as_json, f"{name} is now {role}")


@users_group.command("revoke")
@click.argument("name")
@click.argument("role", metavar="ENV:ROLE|admin")
@JSON
@click.pass_context
def revoke_command(ctx: click.Context, name: str, role: str, as_json: bool) -> None:
    """Take a role (or `admin`) away from NAME."""
    _show(client_of(ctx).revoke(name, role), as_json, f"{name} is no longer {role}")


@users_group.command("disable")
@click.argument("name")
@JSON
@click.pass_context
def disable_command(ctx: click.Context, name: str, as_json: bool) -> None:
    """Disable NAME: their tokens stop working at once; their history stays."""
    _show(
        client_of(ctx).disable_user(name), as_json, f"disabled {name}; their tokens no longer work"
    )


@click.command("whoami")
@JSON
@click.pass_context
def whoami_command(ctx: click.Context, as_json: bool) -> None:
    """Who the server takes you for, and your roles."""
    client = client_of(ctx)
    _show(client.me(), as_json, f"{client.server}:")


def _read_password(name: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.UsageError(f"--password-stdin: no password for {name} on standard input")
    return line


def _show(user: dict[str, Any], as_json: bool, headline: str) -> None:
    if as_json:
        output.as_json(user)
        return
    output.info(headline)
    roles = ", ".join(user["roles"]) or "no roles"
    admin = "admin; " if user["admin"] else ""
    state = " (disabled)" if user["disabled"] else ""
    output.info(f"  {user['name']}{state}: {admin}{roles}")
