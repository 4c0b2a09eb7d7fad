"""`conveyor secrets rotate-key`: the key that encrypts secrets at rest."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of


@click.group("secrets")
def secrets_group() -> None:
    """Secrets at rest (admins only). Secret values are encrypted in the database with a key
    kept in the server's keys file, outside it."""


@secrets_group.command("rotate-key")
@click.pass_context
def rotate_key_command(ctx: click.Context) -> None:
    """Encrypt every secret with a new key, in one transaction, then drop the old key.

    The new key is written to the keys file before anything is encrypted with it, so a
    rotation stopped half-way loses nothing. Back up the keys file afterwards."""
    done = client_of(ctx).rotate_secrets_key()
    dropped = ", ".join(done["dropped"]) or "none"
    output.info(
        f"{done['secrets']} secret(s) now encrypted with key {done['key']}; old keys dropped: "
        f"{dropped}. Back up the server's keys file now."
    )
