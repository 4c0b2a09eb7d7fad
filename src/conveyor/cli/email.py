"""`conveyor email set|show|unset`: who is emailed how an app's runs end, per environment."""

from __future__ import annotations

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of

_ON = click.Choice(["failure", "success", "always"])


@click.group("email")
def email_group() -> None:
    """Who is emailed how a report's or job's runs end, per environment. A list set here
    replaces conveyor.yml's `email:` rule for the same --on in that environment; conveyor.yml's
    rules apply only where schedules are active (not in dev, unless the environments file
    says so), so a developer's runs mail no one unless told to there. The server sends
    through the SMTP server it was started with (`conveyor serve --smtp-host`)."""


@email_group.command("set")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="ADDRESSES",
    help="Addresses to mail, comma-separated (or repeat --to).",
)
@click.option(
    "--nobody",
    is_flag=True,
    help="Mail no one for --on here, not even conveyor.yml's recipients.",
)
@click.option(
    "--on",
    "on",
    type=_ON,
    default="failure",
    show_default=True,
    help="When: a run that fails, one that succeeds (its page attached), or every run.",
)
@click.pass_context
def set_command(
    ctx: click.Context, app: str, environment: str, to: tuple[str, ...], nobody: bool, on: str
) -> None:
    """Email ADDRESSES when a run of APP in ENV ends as --on says: e.g. the report's readers
    `--on success` in prod, the team `--on failure` everywhere it runs."""
    if bool(to) == nobody:
        raise click.UsageError("give either --to ADDRESSES or --nobody")
    addresses = [part.strip() for item in to for part in item.split(",") if part.strip()]
    if to and not addresses:
        raise click.UsageError("--to names no address; e.g. --to ana@example.com,bo@example.com")
    done = client_of(ctx).set_email(app, environment, addresses, on)
    who = ", ".join(done["to"]) or "no one"
    output.info(f"{app} in {environment}: on {done['on']}, email {who}")
    if done.get("warning"):
        output.warn(done["warning"])


@email_group.command("unset")
@click.argument("app")
@click.option("--env", "environment", required=True, help="Environment.")
@click.option("--on", "on", type=_ON, help="Only this rule. Default: every rule set there.")
@click.pass_context
def unset_command(ctx: click.Context, app: str, environment: str, on: str | None) -> None:
    """Forget who was set to be emailed about APP in ENV (conveyor.yml's rules apply again
    where schedules are active)."""
    client_of(ctx).unset_email(app, environment, on)
    output.info(f"{app} in {environment}: email{f' on {on}' if on else ''} unset")


@email_group.command("show")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def show_command(ctx: click.Context, app: str, as_json: bool) -> None:
    """Who is emailed how APP's runs end, in each environment you can see, and where each
    list comes from."""
    found = client_of(ctx).email(app)
    if as_json:
        output.as_json(found)
        return
    rows = []
    for item in found["environments"]:
        for rule in item["rules"]:
            rows.append(
                [item["environment"], rule["on"], ", ".join(rule["to"]) or "no one", rule["source"]]
            )
        for rule in item["quiet"]:
            rows.append(
                [
                    item["environment"],
                    rule["on"],
                    "no one",
                    f"conveyor.yml's {', '.join(rule['to'])} not mailed: schedules paused here",
                ]
            )
        if not item["rules"] and not item["quiet"]:
            rows.append([item["environment"], "-", "no one", "-"])
    output.table(["ENV", "ON", "EMAIL", "FROM"], rows)
    if not found["smtp"]:
        output.warn(found["note"])
