"""`conveyor check` and `conveyor ci`: the one command a CI pipeline runs.

A pull/merge request runs the checks. A push to a branch mapped (ci.branches in conveyor.yml)
to an environment that takes deploys deploys the checkout there; to one that only takes
promotions (Prod), it promotes exactly the checkout's bundle from the upstream environment, or
fails saying what that environment has. A rerun finds the bundle live and does nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from conveyor.bundles.app_file import read_app_file
from conveyor.bundles.build import build_bundle
from conveyor.ci.check import CheckStep, run_checks
from conveyor.ci.event import EventKind, detect
from conveyor.ci.summary import summary
from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.cli.exit_codes import ExitCode
from conveyor.cli.progress import follow_operation
from conveyor.client import Client
from conveyor.domain.branches import Move, plan_for_branch
from conveyor.domain.environments import Policy
from conveyor.domain.policy import bundle_alias
from conveyor.errors import NotFound, PolicyViolation

PATH = click.argument(
    "path", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
_ENVIRONMENTS = ("dev", "test", "prod")


@click.command("check")
@PATH
@click.option(
    "--env",
    "tests_env",
    default="dev",
    show_default=True,
    help="CONVEYOR_ENV the tests run with.",
)
def check_command(path: Path, tests_env: str) -> int:
    """Check the app in PATH the way a merge request should: lint, config.yml for every
    environment, and the bundle's own tests in a runtime built from its lock exactly as the
    server builds it. Exit 1 on any failure."""
    steps = _checks(path, tests_env)
    _write_summary(read_app_file(path).name, _verdict(steps), steps=steps)
    return ExitCode.OK if all(s.ok is not False for s in steps) else ExitCode.FAILURE


def _checks(path: Path, tests_env: str) -> list[CheckStep]:
    steps = []
    spec = read_app_file(path)
    environments = sorted(set(_ENVIRONMENTS) | {e for _, e in spec.branches})
    for step in run_checks(
        path,
        environments=environments,
        tests_env=tests_env,
        progress=output.progress,
        strict_config=spec.ci_config == "strict",
    ):
        steps.append(step)
        mark = {True: "ok", False: "FAILED", None: "skipped"}[step.ok]
        click.echo(click.style(f"{step.name}: {mark}", bold=True))
        for warning in step.warnings:
            click.echo(f"  warning: {warning}")
        if step.detail and step.ok is not True:
            click.echo("  " + step.detail.replace("\n", "\n  "))
        elif step.detail:
            click.echo("  " + step.detail.strip().splitlines()[-1])
    return steps


def _verdict(steps: list[CheckStep]) -> str:
    failed = [s.name for s in steps if s.ok is False]
    return f"Checks failed: {', '.join(failed)}." if failed else "All checks passed."


@click.command("ci")
@PATH
@click.option(
    "--event",
    type=click.Choice(["push", "review"]),
    help="What happened, outside GitHub Actions and GitLab CI (review: a merge request).",
)
@click.option("--branch", help="The branch pushed (or the request's source branch).")
@click.option("--env", "tests_env", default="dev", show_default=True, help="For checks.")
@click.pass_context
def ci_command(
    ctx: click.Context, path: Path, event: str | None, branch: str | None, tests_env: str
) -> int:
    """Run what CI should run for this event: checks for a pull/merge request; for a push, a
    deploy or a promotion by the branch's mapping in conveyor.yml (ci.branches, default
    test -> test, main -> prod).

    Reads GitHub Actions' or GitLab CI's variables; elsewhere give --event and --branch. The
    server and token come from CONVEYOR_SERVER and CONVEYOR_TOKEN. Exit 0 done (or nothing to
    do), 1 failed, 3 refused by policy (e.g. Prod and a bundle Test did not verify)."""
    happened = detect(os.environ, event=event, branch=branch)
    spec = read_app_file(path)
    click.echo(f"conveyor ci: {happened.describe()} ({happened.provider})", err=True)
    if happened.kind is EventKind.REVIEW:
        steps = _checks(path, tests_env)
        _write_summary(spec.name, f"{happened.describe()}: {_verdict(steps)}", steps=steps)
        return ExitCode.OK if all(s.ok is not False for s in steps) else ExitCode.FAILURE

    client = client_of(ctx)
    policies = {e["name"]: Policy(**e["policy"]) for e in client.environments()}
    plan = plan_for_branch(happened.branch, spec.branches, policies)
    if plan.move is Move.NOTHING:
        output.info(f"{plan.why}; nothing to do")
        return ExitCode.OK
    assert plan.environment is not None
    with tempfile.TemporaryDirectory(prefix="conveyor-ci-") as scratch:
        built = build_bundle(
            path, Path(scratch) / "bundle.tar.gz", progress=output.progress, warn=output.warn
        )
        if built.lock.note.startswith("locked"):
            output.warn(
                "conveyor.lock was written by this run, so this bundle's packages are whatever "
                "was newest now; commit conveyor.lock so every branch builds the same bundle"
            )
        alias = bundle_alias(built.id)
        live = _live(client, spec.name, plan.environment)
        if live is not None and live["bundle"] == built.id:
            message = (
                f"bundle {alias} of {spec.name} is already live in {plan.environment} "
                f"(release {live['release']}); nothing to do"
            )
            output.info(message)
            _write_summary(spec.name, message, status=client.status(spec.name))
            return ExitCode.OK
        click.echo(f"... {plan.why}: bundle {alias}", err=True)
        if plan.move is Move.DEPLOY:
            if not client.has_bundle(spec.name, built.id):
                click.echo(f"... uploading bundle {alias}", err=True)
                client.upload(built.archive, built.provenance)
            answer = client.deploy(spec.name, built.id, plan.environment)
        else:
            answer = _promote(client, spec.name, built.id, plan.environment, plan.upstream)
    code = follow_operation(client, answer)
    outcome = "succeeded" if code == ExitCode.OK else "failed"
    _write_summary(
        spec.name,
        f"{happened.describe()}: {plan.move} of bundle `{alias}` to {plan.environment} {outcome}.",
        status=client.status(spec.name),
    )
    return code


def _promote(
    client: Client, app: str, bundle: str, environment: str, upstream: str | None
) -> dict[str, object]:
    """Promote exactly ``bundle``; when the upstream did not verify it, say what it has."""
    try:
        return client.promote(app, environment, bundle)
    except NotFound:
        why = f"{upstream} never ran"
    except PolicyViolation as refused:
        if "not verified" not in str(refused):
            raise  # another rule (approvals, ...): the server's message says what to do
        why = f"was not verified in {upstream} ({str(refused).split(': ', 1)[-1].split('. ')[0]})"
    there = _live(client, app, upstream or "")
    has = (
        f"{upstream} has bundle {there['alias']} (release {there['release']}"
        + (", verified)" if there["verified"] else ", not verified)")
        if there
        else f"nothing of {app} is live in {upstream}"
    )
    raise PolicyViolation(
        f"{environment} takes only bundles that passed {upstream}. This checkout is bundle "
        f"{bundle_alias(bundle)}, which {why}; {has}. Merge this change into the branch that "
        f"deploys to {upstream} and let it pass there: merging that branch here then builds "
        f"the same bundle."
    )


def _live(client: Client, app: str, environment: str) -> dict[str, object] | None:
    try:
        status = client.status(app)
    except NotFound:
        return None  # the app was never deployed
    for cell in status["cells"]:
        if cell["environment"] == environment:
            return dict(cell)
    return None


def _write_summary(
    app: str,
    headline: str,
    *,
    steps: list[CheckStep] | None = None,
    status: dict[str, Any] | None = None,
) -> None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(summary(app, headline, steps=steps, status=status) + "\n")
