"""`conveyor demo`: the whole Dev -> Test -> Prod path in about a minute, on the examples.

Starts a server in a fresh demo home whose Prod asks for one approval from someone other than
who deploys; adds two users, ana (deploys, promotes) and bob (approves for Prod); ana deploys
a FastAPI API, a Shiny app and a notebook report to dev and promotes them through test (their
checks run), bob approves them for prod, ana promotes them there; then ana deploys a change
whose tests fail and Prod refuses it while the previous version keeps serving. Every step is
the real CLI command, shown before it runs, with whose token it runs."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from conveyor.cli.local_server import LocalServer, environments_file
from conveyor.errors import InvalidInput, RuntimeFailure

APPS = ("forecast-api", "sales-dashboard", "quarterly-report")


def _examples() -> Path:
    """examples/ of this checkout (the demo runs from a clone of the repository)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / "forecast-api" / "conveyor.yml").is_file():
            return parent / "examples"
    raise InvalidInput(
        "the demo needs the examples/ folder of a Conveyor checkout; run it from a clone "
        "(`make demo`)"
    )


@click.command("demo")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Demo server state. Default: a fresh temporary directory, removed at the end.",
)
@click.option(
    "--port", default=8700, show_default=True, help="API port; dev, test, prod use the next three."
)
@click.option("--no-wait", is_flag=True, help="Stop at the end instead of serving until Ctrl-C.")
def demo_command(home: Path | None, port: int, no_wait: bool) -> int:
    """Run the Dev -> Test -> Prod demo on examples/ with a fresh server."""
    examples = _examples()
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
    home = (home or scratch / "home").absolute()
    cache = os.environ.get("CONVEYOR_UV_CACHE") or str(Path.home() / ".cache" / "conveyor" / "uv")
    env = {
        **os.environ,
        "CONVEYOR_CREDENTIALS": str(scratch / "credentials.json"),
        "CONVEYOR_SERVER": f"http://127.0.0.1:{port}",
        "CONVEYOR_UV_CACHE": cache,
    }
    env.pop("CONVEYOR_TOKEN", None)
    environments = environments_file(
        scratch / "environments.yml",
        {name: port + 1 + i for i, name in enumerate(("dev", "test", "prod"))},
        {"prod": "approvals: 1, approver_not_deployer: true"},
    )
    server = LocalServer(home, port, environments, env, scratch / "server.log")
    _say(f"A fresh Conveyor server (state in {home}; its log in {server.log})")
    try:
        server.start()
        admin = _Runner(env, "you (the admin)")
        sources = scratch / "apps"
        for app in APPS:
            shutil.copytree(
                examples / app,
                sources / app,
                ignore=shutil.ignore_patterns(".conveyor", "__pycache__"),
            )

        _say("1. Two people: ana deploys and promotes; bob approves what goes to prod")
        roles = ("dev:developer", "test:developer", "test:deployer", "prod:deployer")
        passwords = {name: secrets.token_urlsafe(9) for name in ("ana", "bob")}
        admin(
            "users",
            "add",
            "ana",
            *(arg for role in roles for arg in ("--role", role)),
            "--password-stdin",
            stdin=passwords["ana"],
        )
        admin(
            "users",
            "add",
            "bob",
            "--role",
            "test:viewer",
            "--role",
            "prod:approver",
            "--password-stdin",
            stdin=passwords["bob"],
        )
        ana = _Runner({**env, "CONVEYOR_TOKEN": admin.token_for("ana")}, "ana")
        bob = _Runner({**env, "CONVEYOR_TOKEN": admin.token_for("bob")}, "bob")
        run = ana

        _say("2. Deploy three apps to dev: a FastAPI API, a Shiny app, a notebook report")
        for app in APPS:
            run("deploy", str(sources / app), "--env", "dev")
        _say("3. Promote them to test: the same bundles, checked again there")
        for app in APPS:
            run("promote", app, "--to", "test")
        _say("4. Prod asks for an approval by someone who did not deploy: bob gives it")
        run("promote", APPS[0], "--to", "prod", expect=3)
        for app in APPS:
            bob("approve", app, "--env", "prod", "--comment", "reviewed in test")
        _say("5. Promote to prod: exactly the bundles verified in test and approved")
        for app in APPS:
            run("promote", app, "--to", "prod")

        _say("6. A change with a bug: the forecast skips a day, and the app's tests catch it")
        changed = sources / "forecast-api-change"
        shutil.copytree(sources / "forecast-api", changed)
        code = (changed / "app.py").read_text()
        (changed / "app.py").write_text(code.replace("range(horizon)", "range(1, horizon)"))
        run("deploy", str(changed), "--env", "test", expect=1)
        _say(
            "7. Prod refuses the change: it only takes what passed test; the old version serves on"
        )
        history = run.output("history", "forecast-api", "--env", "test", "--json")
        failed = next(r for r in json.loads(history) if r["state"] == "failed")
        run("promote", "forecast-api", "--to", "prod", "--bundle", failed["bundle"][:10], expect=3)
        url = f"http://127.0.0.1:{port + 3}/forecast-api/forecast?region=west"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            click.echo(f"$ curl {url}\n{response.read().decode()}")

        _say("Where everything runs")
        run("status")
        for app in APPS:
            click.echo(
                f"  {app:<18} "
                + "  ".join(
                    f"{n}: http://127.0.0.1:{port + 1 + i}/{app}/"
                    for i, n in enumerate(("dev", "test", "prod"))
                )
            )
        _say("The console: the same pipeline in a browser")
        click.echo(f"  http://127.0.0.1:{port}/")
        click.echo(f"  sign in as ana (deploys, promotes), password {passwords['ana']}")
        click.echo(f"  or as bob (approves for prod), password {passwords['bob']}")
        if no_wait:
            return 0
        credentials = scratch / "credentials.json"
        _say("Serving until Ctrl-C. In another terminal:")
        click.echo(
            f"  CONVEYOR_SERVER=http://127.0.0.1:{port} CONVEYOR_CREDENTIALS={credentials} "
            "conveyor status"
        )
        while server.running():
            time.sleep(0.5)
        raise RuntimeFailure(f"the demo server stopped:\n{server.output()}")
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        click.echo("demo server stopped", err=True)
        shutil.rmtree(scratch, ignore_errors=True)


class _Runner:
    """Runs `conveyor` commands as one person (whose token ``env`` holds)."""

    def __init__(self, env: dict[str, str], who: str) -> None:
        self.env = env
        self.who = who

    def __call__(self, *args: str, expect: int = 0, stdin: str | None = None) -> None:
        shown = shlex.join(args) + (" <<< '...'" if stdin is not None else "")
        click.echo(click.style(f"{self.who}$ conveyor " + shown, bold=True))
        result = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            env=self.env,
            check=False,
            input=stdin + "\n" if stdin is not None else None,
            text=True,
        )
        if result.returncode != expect:
            raise RuntimeFailure(
                f"`conveyor {shlex.join(args)}` ended with exit code {result.returncode}, "
                f"expected {expect}"
            )

    def token_for(self, user: str) -> str:
        """A new token for ``user``, made with this runner's (an admin's) token."""
        created = json.loads(self.output("token", "create", "--user", user, "--json"))
        return str(created["token"])

    def output(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def _say(title: str) -> None:
    click.echo("\n" + click.style(f"== {title}", bold=True))
