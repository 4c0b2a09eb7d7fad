"""`conveyor status`, `history`, `diff` and `open`: what runs where."""

from __future__ import annotations

import webbrowser
from datetime import UTC, datetime
from typing import Any

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.domain.policy import bundle_alias
from conveyor.errors import NotFound

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


@click.command("status")
@click.argument("app", required=False)
@JSON
@click.pass_context
def status_command(ctx: click.Context, app: str | None, as_json: bool) -> None:
    """Apps x environments: the live bundle, its age and state, ✓ when verified there, and who
    approved it there. DEGRADED marks a live release whose processes keep crashing (see
    `conveyor logs`); REPAIRED one whose files were found changed and restored from its bundle.
    Below the table: how the server isolates apps, and each live release's isolation where it
    differs (unsandboxed, or with limits)."""
    found = client_of(ctx).status(app)
    if as_json:
        output.as_json(found)
        return
    names = [e["name"] for e in found["environments"]]
    cells = {(c["app"], c["environment"]): c for c in found["cells"]}
    if not found["apps"]:
        output.info("no apps yet: `conveyor deploy PATH` releases one into dev")
        return
    rows = []
    for name in found["apps"]:
        row = [name]
        for environment in names:
            cell = cells.get((name, environment))
            row.append(_cell(cell) if cell else "-")
        rows.append(row)
    output.table(["APP", *(n.upper() for n in names)], rows)
    output.info("")
    for environment in found["environments"]:
        output.info(f"{environment['name']:<6} {environment['url'] or '-'}/<app>/")
        for name in environment.get("unverified", []):
            output.warn(
                f"{environment['name']}: data connection {name} is used without proof that its "
                "login cannot write (`verified: false`)"
            )
    output.info(f"\nisolation: {found.get('isolation', 'unknown')}")
    for cell in found["cells"]:
        if cell.get("repaired"):
            output.info(f"  {cell['app']} in {cell['environment']}: {cell['repaired']}")
        if cell.get("run_failed"):
            output.warn(
                f"{cell['app']} in {cell['environment']}: {cell['run_failed']} (the previous "
                f"output is still served; `conveyor runs {cell['app']} --env "
                f"{cell['environment']}`)"
            )
        isolation = cell.get("isolation") or ""
        if isolation.startswith("none") or "limits" in isolation:
            output.info(f"  {cell['app']} in {cell['environment']}: {isolation}")
    if found.get("git"):
        output.info("")
        output.table(
            ["WATCHED REPOSITORY", "BRANCH", "COMMIT", "LAST RESULT"],
            [
                [
                    w["repository"],
                    w["branch"],
                    (w["commit"] or "-")[:12],
                    ("POLL FAILED; before: " if w.get("error") else "") + w["result"][:90],
                ]
                for w in found["git"]
            ],
        )
        for error in sorted(
            {(w["repository"], w["error"]) for w in found["git"] if w.get("error")}
        ):
            output.warn(f"git: {error[0]}: the last poll failed: {error[1]}")


def _cell(cell: dict[str, Any]) -> str:
    text = f"{cell['alias']} {age(str(cell['since']))}"
    if cell["state"] != "live":
        text += f" {cell['state']}"
    if cell.get("degraded"):
        text += " DEGRADED"
    if cell.get("repaired"):
        text += " REPAIRED"
    if cell.get("run_failed"):
        text += " RUN-FAILED"
    if cell.get("sleeping"):
        text += " sleeping"
    if cell["verified"]:
        text += " ✓"
    approved = cell.get("approved_by") or ()
    if approved:
        text += f" approved:{','.join(approved)}"
    return text


def age(stamp: str) -> str:
    """How long ago an ISO 8601 time was, in the largest whole unit."""
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return "?"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.command("history")
@click.argument("app")
@click.option("--env", "environment", help="Only this environment.")
@JSON
@click.pass_context
def history_command(ctx: click.Context, app: str, environment: str | None, as_json: bool) -> None:
    """An app's releases, newest first, with why each failed."""
    found = client_of(ctx).history(app, environment)
    if as_json:
        output.as_json(found)
        return
    rows = [
        [
            str(r["id"]),
            r["environment"],
            bundle_alias(r["bundle"]),
            r["kind"],
            r["state"]
            + (" ✓" if r["verified"] else "")
            + (" (files removed)" if r.get("files_removed_at") else ""),
            r["created_by"],
            age(r["created_at"]),
            (r["reason"] or "").splitlines()[0][:70] if r["reason"] else "",
        ]
        for r in found
    ]
    output.table(["RELEASE", "ENV", "BUNDLE", "KIND", "STATE", "BY", "AGE", "REASON"], rows)


@click.command("diff")
@click.argument("app")
@click.argument("left")
@click.argument("right")
@JSON
@click.pass_context
def diff_command(ctx: click.Context, app: str, left: str, right: str, as_json: bool) -> int:
    """What differs for APP between two environments: bundle, type, entrypoint, python, lock,
    configuration and variables. Exit code 2 when something differs.

    Secret values are never shown; whether two secrets are equal only admins are told (others
    see "not compared")."""
    found = client_of(ctx).diff(app, left, right)
    if as_json:
        output.as_json(found)
    else:
        verdicts = {True: "same", False: "DIFFERENT", None: "not compared"}
        rows = [
            [d["aspect"], d["left"] or "-", d["right"] or "-", verdicts[d["same"]]] for d in found
        ]
        output.table(["", left.upper(), right.upper(), ""], rows)
    return 0 if all(d["same"] is not False for d in found) else 2


@click.command("open")
@click.argument("app")
@click.option("--env", "environment", default="dev", show_default=True, help="Environment.")
@click.pass_context
def open_command(ctx: click.Context, app: str, environment: str) -> None:
    """Print the app's URL in ENV and open it in a browser where there is one."""
    for found in client_of(ctx).environments():
        if found["name"] == environment:
            url = f"{found['url']}/{app}/"
            output.info(url)
            webbrowser.open(url)
            return
    raise NotFound(f"there is no environment {environment!r}")
