"""`conveyor schedule set|show|unset`, `conveyor run` and `conveyor runs`: reports and jobs run
again on a schedule or by hand."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.exit_codes import ExitCode


@click.group("schedule")
def schedule_group() -> None:
    """When a report (notebook, quarto) or job runs again, per environment: cron syntax in a
    time zone. A schedule set here wins over the bundle's `schedule:` in conveyor.yml.
    Environments whose schedules are paused (dev, unless the environments file says
    `schedules: active`) run only by hand (`conveyor run`)."""


@schedule_group.command("set")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.argument("cron")
@click.option(
    "--tz",
    "timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone the schedule is read in, e.g. Europe/Berlin.",
)
@click.pass_context
def set_command(ctx: click.Context, app: str, environment: str, cron: str, timezone: str) -> None:
    """Run APP in ENV on CRON (five fields, e.g. "0 6 * * 1-5" for 06:00 on weekdays, or
    @daily), from its next slot on."""
    done = client_of(ctx).set_schedule(app, environment, cron, timezone)
    output.info(f"{app} in {environment}: {done['cron']} ({done['timezone']})")


@schedule_group.command("unset")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.pass_context
def unset_command(ctx: click.Context, app: str, environment: str) -> None:
    """Forget the schedule set for APP in ENV (the bundle's own `schedule:` applies again)."""
    done = client_of(ctx).unset_schedule(app, environment)
    left = f"{done['cron']} (from {done['source']})" if done["cron"] else "no schedule"
    output.info(f"{app} in {environment}: {left}")


@schedule_group.command("show")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def show_command(ctx: click.Context, app: str, as_json: bool) -> None:
    """APP's schedule in each environment you can see: where it comes from, whether it is
    paused, when it runs next and how the last run ended."""
    found = client_of(ctx).schedules(app)
    if as_json:
        output.as_json(found)
        return
    rows = []
    for item in found:
        schedule = f"{item['cron']} ({item['timezone']})" if item["cron"] else "-"
        last = item["last_run"]
        rows.append(
            [
                item["environment"],
                schedule,
                item["source"] or "-",
                "active" if item["active"] else "paused",
                item["next_run"] or "-",
                f"run {last['id']} {last['state']}" if last else "-",
            ]
        )
    output.table(["ENV", "SCHEDULE", "FROM", "STATE", "NEXT RUN (UTC)", "LAST RUN"], rows)


@click.command("run")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.option("--no-wait", is_flag=True, help="Start the run and return at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
@click.pass_context
def run_command(
    ctx: click.Context, app: str, environment: str, no_wait: bool, as_json: bool
) -> int:
    """Run the live report or job APP in ENV now (also where schedules are paused), with its
    log as it is written. Its output is served at /APP/ once it succeeds; a failed run leaves
    the previous output served. Exit code 1 when the run fails."""
    client = client_of(ctx)
    started = client.start_run(app, environment)
    if no_wait:
        if as_json:
            output.as_json(started)
        else:
            output.info(f"run {started['id']} started")
        return ExitCode.OK
    if not as_json:
        click.echo(f"run {started['id']} of {app} in {environment}", err=True)
    finished = client.follow_run(
        app,
        environment,
        started["id"],
        (lambda line: None) if as_json else (lambda line: click.echo("  " + line)),
    )
    if as_json:
        output.as_json({k: v for k, v in finished.items() if k != "log"})
    elif finished["state"] == "succeeded":
        output.info(click.style("✓ ", fg="green", bold=True) + f"run {finished['id']} succeeded")
    else:
        output.error(f"run {finished['id']} {finished['state']}: {finished['detail']}")
    return ExitCode.OK if finished["state"] == "succeeded" else ExitCode.FAILURE


@click.command("runs")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.option("--limit", default=20, show_default=True, help="How many of the latest runs.")
@click.option("--log", "run_id", type=int, metavar="ID", help="Print run ID's whole log instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def runs_command(
    ctx: click.Context, app: str, environment: str, limit: int, run_id: int | None, as_json: bool
) -> None:
    """APP's latest runs in ENV: when, what started them, how they ended. Each kept run's
    output is served at /APP/_runs/ID/; --log ID prints a run's log (what it printed, how it
    ended, whether its email was sent)."""
    if run_id is not None:
        run = client_of(ctx).run(app, environment, run_id)
        if as_json:
            output.as_json(run)
            return
        for line in run["log"]:
            click.echo(f"{line['at'][:19]}  {line['line']}")
        return
    found = client_of(ctx).runs(app, environment, limit)
    if as_json:
        output.as_json(found)
        return
    output.table(
        ["RUN", "STARTED (UTC)", "BY", "STATE", "RELEASE", "DETAIL"],
        [
            [
                str(r["id"]),
                r["started_at"][:19],
                f"{r['trigger']}" + (f" ({r['actor']})" if r["trigger"] == "manual" else ""),
                r["state"],
                str(r["release_id"]),
                r["detail"] or "",
            ]
            for r in found
        ],
    )
