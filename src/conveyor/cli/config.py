"""`conveyor config show | diff | check`: read an app's config.yml as each environment sees it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from conveyor.cli import output
from conveyor.cli.exit_codes import ExitCode
from conveyor.config import inspection

file_option = click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False),
    help="Config file to read. Default: $CONVEYOR_CONFIG_FILE, $R_CONFIG_FILE, or config.yml "
    "in this directory or the nearest parent that has one.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.group("config")
def config_group() -> None:
    """Show, compare and check an app's per-environment configuration (config.yml)."""


@config_group.command("show")
@click.argument("key", required=False)
@click.option(
    "--env",
    "env",
    metavar="NAME",
    help="Environment (section) to resolve. Default: $CONVEYOR_ENV, $R_CONFIG_ACTIVE, or default.",
)
@file_option
@json_option
def show_command(key: str | None, env: str | None, file: str | None, as_json: bool) -> int:
    """Print the resolved values of one environment and the section each came from.

    KEY narrows the output to one key or a dotted prefix (e.g. `database`). Values read with
    `!env` and keys that look secret (password, secret, token, key, credential, passphrase;
    singular or plural) are masked.
    """
    shown = inspection.show(env, file, key)
    for warning in shown.warnings:
        output.warn(warning)
    if as_json:
        output.as_json(
            {
                "file": shown.file,
                "active": shown.active,
                "section": shown.section,
                "values": [_entry_json(e) for e in shown.entries],
            }
        )
        return ExitCode.OK
    output.info(f"{shown.file}  [{shown.active}]")
    output.table(["KEY", "VALUE", "FROM"], [[e.key, e.display(), e.source] for e in shown.entries])
    return ExitCode.OK


@config_group.command("diff")
@click.argument("env_a", metavar="ENV_A")
@click.argument("env_b", metavar="ENV_B")
@file_option
@json_option
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit with 2 when the environments differ (0 when they do not).",
)
def diff_command(env_a: str, env_b: str, file: str | None, as_json: bool, exit_code: bool) -> int:
    """Show keys whose resolved values differ between ENV_A and ENV_B, or that only one has.

    `!env` values compare by the variable they read; secret values are masked, but a change to
    one is still reported.
    """
    result = inspection.diff(env_a, env_b, file)
    for warning in result.warnings:
        output.warn(warning)
    if as_json:
        output.as_json(
            {
                "file": result.file,
                "a": result.a,
                "b": result.b,
                "changes": [
                    {
                        "key": c.key,
                        "kind": c.kind,
                        "a": _entry_json(c.before) if c.before else None,
                        "b": _entry_json(c.after) if c.after else None,
                    }
                    for c in result.changes
                ],
            }
        )
    elif not result.changes:
        output.info(f"{env_a} and {env_b} resolve to the same values ({result.file})")
    else:
        output.info(f"{result.file}: {env_a} -> {env_b}")
        output.table(
            ["KEY", "CHANGE", env_a.upper(), env_b.upper()],
            [
                [
                    c.key,
                    c.kind,
                    c.before.display() if c.before else "-",
                    c.after.display() if c.after else "-",
                ]
                for c in result.changes
            ],
        )
    if exit_code and result.changes:
        return ExitCode.DIFFERENCES
    return ExitCode.OK


@config_group.command("check")
@click.option(
    "--env",
    "envs",
    metavar="NAME",
    multiple=True,
    help="Environment whose !env variables must be set (repeatable). "
    "Default: the active name ($CONVEYOR_ENV, $R_CONFIG_ACTIVE, or default).",
)
@file_option
@json_option
def check_command(envs: tuple[str, ...], file: str | None, as_json: bool) -> int:
    """Validate the config file and list every problem, not just the first.

    Checks: a `default` section exists, every section is a mapping, `inherits:` names existing
    sections without cycles, and each named environment has a section whose `!env` variables
    are set and which needs no R `!expr` other than Sys.getenv. Warns, with the line, where
    R's config package would read the file differently (!env, y/n booleans, `inherits:` of a
    missing section). Exits 1 when there are problems; warnings alone exit 0.
    """
    report = inspection.check(envs, file)
    if as_json:
        output.as_json(asdict(report) | {"ok": report.ok})
        return ExitCode.OK if report.ok else ExitCode.FAILURE
    for warning in report.warnings:
        output.warn(warning)
    if report.ok:
        output.info(
            f"{report.file}: ok ({len(report.sections)} sections; "
            f"checked for {', '.join(report.checked)})"
        )
    else:
        count = len(report.problems)
        output.error(f"{report.file or 'config'}: {count} problem{'s' if count > 1 else ''}")
        for problem in report.problems:
            click.echo(f"  - {problem}", err=True)
    return ExitCode.OK if report.ok else ExitCode.FAILURE


def _entry_json(entry: inspection.Entry) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": entry.key,
        "value": entry.value,
        "from": entry.source,
        "masked": entry.masked,
    }
    if entry.env is not None:
        data["env"] = {"variable": entry.env, "state": entry.env_state}
    if entry.expr is not None:
        data["expr"] = entry.expr
    return data
