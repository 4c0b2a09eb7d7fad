"""Print the CLI reference (docs/cli.md) from the commands' own --help.

`make docs` writes it; tests/test_docs.py fails when the committed file is out of date.
"""

from __future__ import annotations

import click

from conveyor.cli import cli

HEADER = """\
# CLI reference

Generated from `conveyor --help` by `make docs`; do not edit by hand. The exit codes in the
first section hold for every command.
"""


def commands(
    command: click.Command, path: tuple[str, ...]
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += commands(command.commands[name], (*path, name))
    return found


def render() -> str:
    parts = [HEADER]
    for path, command in commands(cli, ("conveyor",)):
        context = click.Context(
            command,
            info_name=" ".join(path),
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        )
        parts.append(f"## `{' '.join(path)}`\n\n```text\n{command.get_help(context)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
