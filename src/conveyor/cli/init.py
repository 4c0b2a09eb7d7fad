"""`conveyor init [PATH]`: scaffold Conveyor's files in an existing project: conveyor.yml,
config.yml, a smoke test and the CI file, then say what to do next."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from conveyor.cli import output
from conveyor.cli.exit_codes import ExitCode
from conveyor.domain.apps import DEFAULT_ENTRYPOINTS, AppType
from conveyor.scaffold.ci import (
    SETTINGS,
    SETTINGS_PAGES,
    Provider,
    ci_user_command,
    pipeline_order,
)
from conveyor.scaffold.project import Action, Request, Scaffold, scaffold


@click.command("init")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--ci",
    "provider",
    type=click.Choice([p.value for p in Provider]),
    default=Provider.GITHUB.value,
    show_default=True,
    help="CI provider: GitHub Actions (.github/workflows/conveyor.yml) or GitLab CI "
    "(.gitlab-ci.yml).",
)
@click.option(
    "--type",
    "app_type",
    type=click.Choice([t.value for t in AppType]),
    help="The app's type. Default: detected from the code.",
)
@click.option(
    "--name",
    help="The app's name. Default: the directory's name in lowercase letters, digits and dashes.",
)
@click.option(
    "--entrypoint",
    metavar="ENTRYPOINT",
    help="What to run: module:variable (fastapi, flask, dash), a file (shiny, streamlit, "
    "notebook, quarto), a directory (static) or a command. Default: detected from the code.",
)
@click.option("--force", is_flag=True, help="Replace files that exist (never config.yml).")
def init_command(
    path: Path,
    provider: str,
    app_type: str | None,
    name: str | None,
    entrypoint: str | None,
    force: bool,
) -> int:
    """Scaffold Conveyor's files in the project in PATH (default: this directory).

    Writes conveyor.yml, with the app's type and entrypoint detected from the code (imports of
    shiny, streamlit, dash, fastapi or flask; notebooks; Quarto files; index.html), config.yml
    with default, dev, test and prod sections, tests/test_smoke.py, and the CI file that runs
    `conveyor ci`: .github/workflows/conveyor.yml, or .gitlab-ci.yml with --ci gitlab. When
    the code does not tell the type, it asks in a terminal and fails elsewhere, listing what it
    found. A file that exists is kept unless --force is given; config.yml is always kept.
    """
    request = Request(
        directory=path,
        provider=Provider(provider),
        app_type=AppType(app_type) if app_type else None,
        name=name,
        entrypoint=entrypoint,
        force=force,
    )
    result = scaffold(request, ask=_ask if sys.stdin.isatty() else None)
    _report(result)
    return ExitCode.OK


def _ask(question: str, choices: Sequence[str]) -> str:
    return str(click.prompt(question, type=click.Choice(list(choices))))


def _report(result: Scaffold) -> None:
    spec = result.spec
    how = f"{spec.type.value}"
    if spec.entrypoint and spec.entrypoint != DEFAULT_ENTRYPOINTS[spec.type]:
        how += f", entrypoint {spec.entrypoint}"
    elif spec.entrypoint:
        how += f", entrypoint {spec.entrypoint} (the default)"
    if result.detection is not None:
        output.info(f"app {spec.name}: {how}; {result.detection.evidence}")
    else:
        output.info(f"app {spec.name}: {how}, as conveyor.yml says")
    output.table(
        ["FILE", "RESULT"],
        [
            [_shown(o.path), f"{o.action.value}: {o.detail}" if o.detail else o.action.value]
            for o in result.outcomes
        ],
    )
    for note in result.notes:
        output.info(f"note: {note}")
    changed = [o for o in result.outcomes if o.action is not Action.KEPT]
    if not changed:
        output.info("\nNothing written: every file exists. --force replaces them (not config.yml).")
    output.info("\nNext steps:")
    target = _shown(result.directory)
    output.info(
        f"  1. Read conveyor.yml, then build the bundle: conveyor bundle {target}\n"
        "     (it writes conveyor.lock: commit it too)"
    )
    output.info(
        "  2. On the server (as an admin), add a user for CI and make its token:\n"
        f"       {ci_user_command(result.spec.branches)}\n"
        "       conveyor token create --user ci --expires 365"
    )
    provider = result.provider
    output.info(f"  3. In {_provider_name(provider)}, {SETTINGS_PAGES[provider]}, add:")
    width = max(len(s.kind) for s in SETTINGS[provider])
    for setting in SETTINGS[provider]:
        output.info(f"       {setting.kind.ljust(width)}  {setting.name:<18} {setting.value}")
    files = " ".join(_shown(o.path) for o in changed) or "."
    mapping = ", ".join(f"{b} -> {e}" for b, e in pipeline_order(result.spec.branches))
    output.info(
        "  4. Commit and push:\n"
        f"       git add {files}\n"
        "       git commit -m 'Deploy with Conveyor'\n"
        "       git push\n"
        f"     Pull requests run the checks; a push to a branch releases to its environment: "
        f"{mapping}"
    )


def _provider_name(provider: Provider) -> str:
    return {Provider.GITHUB: "GitHub", Provider.GITLAB: "GitLab"}[provider]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when that is short, else absolute."""
    relative = Path(os.path.relpath(path))
    return path.as_posix() if relative.parts[:3] == ("..",) * 3 else relative.as_posix()
