"""How CLI commands reach the server: the root `--server` option, else CONVEYOR_SERVER, else the
saved default (see conveyor.credentials)."""

from __future__ import annotations

import click

from conveyor.client import Client


def client_of(context: click.Context) -> Client:
    root = context.find_root()
    server = (root.obj or {}).get("server")
    return Client(server)
