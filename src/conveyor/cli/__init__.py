"""The `conveyor` command. Commands live one group per module; this module wires them and maps
errors to messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from conveyor import __version__
from conveyor.cli import output
from conveyor.cli.audit import audit_group
from conveyor.cli.bundle import bundle_group
from conveyor.cli.ci import check_command, ci_command
from conveyor.cli.config import config_group
from conveyor.cli.data import data_group
from conveyor.cli.demo import demo_command
from conveyor.cli.drift import drift_command, repair_command
from conveyor.cli.email import email_group
from conveyor.cli.environments import apply_command, plan_command
from conveyor.cli.exit_codes import ExitCode, for_error
from conveyor.cli.gc import gc_command
from conveyor.cli.init import init_command
from conveyor.cli.keys import secrets_group
from conveyor.cli.lint import lint_command
from conveyor.cli.logs import logs_command
from conveyor.cli.releases import approve_command, deploy_command, promote_command, rollback_command
from conveyor.cli.runs import run_command, runs_command, schedule_group
from conveyor.cli.server import login_command, serve_command
from conveyor.cli.status import diff_command, history_command, open_command, status_command
from conveyor.cli.tokens import token_group
from conveyor.cli.users import users_group, whoami_command
from conveyor.cli.variables import vars_group
from conveyor.cli.viewers import access_group
from conveyor.errors import ConveyorError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="conveyor")
@click.option(
    "--server",
    metavar="URL",
    help="Conveyor server to talk to. Default: $CONVEYOR_SERVER, else the one you logged in to "
    "last, else http://127.0.0.1:8700.",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None) -> None:
    """Conveyor takes data-science apps, APIs and reports from Dev through Test to Prod, safely.

    Exit codes: 0 success, 1 failure or problems found, 2 differences found (where a command
    says so), 3 refused by the pipeline's rules, 4 not allowed (no valid token, or a role you
    do not hold), 64 wrong command line, 130 interrupted.
    """
    ctx.obj = {"server": server}


for command in (
    bundle_group,
    config_group,
    serve_command,
    login_command,
    whoami_command,
    users_group,
    token_group,
    secrets_group,
    deploy_command,
    promote_command,
    approve_command,
    rollback_command,
    status_command,
    history_command,
    diff_command,
    logs_command,
    vars_group,
    access_group,
    schedule_group,
    email_group,
    run_command,
    runs_command,
    open_command,
    audit_group,
    demo_command,
    check_command,
    ci_command,
    init_command,
    plan_command,
    apply_command,
    drift_command,
    repair_command,
    gc_command,
    data_group,
    lint_command,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="conveyor",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a group run on its own prints its help; that is not a mistake
        return ExitCode.OK
    except click.UsageError as exc:
        exc.show()
        return ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        return ExitCode.FAILURE
    except (click.Abort, KeyboardInterrupt):
        output.error("interrupted")
        return ExitCode.INTERRUPTED
    except ConveyorError as exc:
        output.error(str(exc))
        return for_error(exc)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
