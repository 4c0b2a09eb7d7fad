"""A real `conveyor serve` process on free ports in a temporary home, and the real CLI against
it. The server is stopped by its process id when the test ends, and anything its apps left
behind is stopped through their process records."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.cli.local_server import LocalServer, environments_file
from conveyor.errors import RuntimeFailure
from conveyor.runtime.supervisor import Supervisor

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(
        self, root: Path, environments: str | None = None, arguments: Sequence[str] = ()
    ) -> None:
        self.root = root
        #: Given to every start (e.g. --database-url), restarts included.
        self.arguments = tuple(arguments)
        self.home = root / "home"
        self.environments_file = root / "environments.yml"
        self.template = environments
        self.env = {
            **os.environ,
            "CONVEYOR_CREDENTIALS": str(root / "credentials.json"),
            "CONVEYOR_UV_CACHE": os.environ["UV_CACHE_DIR"],
            "NO_COLOR": "1",
        }
        self.env.pop("CONVEYOR_TOKEN", None)
        self._choose_ports()
        self.starts = 0
        self.process: LocalServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def app_url(self, environment: str, app: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[environment]}/{app}{path}"

    def start(self, *, with_file: bool = True, arguments: Sequence[str] = ()) -> None:
        arguments = (*self.arguments, *arguments)
        """Start `conveyor serve`; ``with_file=False`` leaves out ``--environments`` (then the
        environments a first start wrote stay, and `conveyor apply` may change them)."""
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        file = self.environments_file if with_file else None
        for attempt in range(3):
            self.process = LocalServer(self.home, self.api_port, file, self.env, log, arguments)
            try:
                self.process.start()
                return
            except RuntimeFailure as exc:
                # A free port found here can be taken by another process before the server
                # binds it; a first start may pick others (a restart keeps its ports).
                if "address already in use" not in str(exc) or self.starts > 1 or attempt == 2:
                    raise
                shutil.rmtree(self.home, ignore_errors=True)
                self._choose_ports()

    def _choose_ports(self) -> None:
        self.api_port = free_port()
        self.ports = {name: free_port() for name in ("dev", "test", "prod")}
        if self.template:
            self.environments_file.write_text(self.template.format(**self.ports))
        else:
            environments_file(self.environments_file, self.ports)
        self.env["CONVEYOR_SERVER"] = f"http://127.0.0.1:{self.api_port}"

    def log(self) -> str:
        return (self.root / f"server-{self.starts}.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up."""
        assert self.process is not None
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        # Whatever apps a killed server left: stopped by their recorded pids.
        if (self.home / "run").exists():
            Supervisor(self.home / "run").reap_orphans(timeout=5)

    def cli(
        self, *args: str, token: str | None = None, timeout: float = 300, stdin: str | None = None
    ) -> Result:
        env = dict(self.env)
        if token is not None:
            env["CONVEYOR_TOKEN"] = token
        done = subprocess.run(
            [CONVEYOR, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def user(self, name: str, *roles: str) -> str:
        """Add a user with ``ENV:ROLE`` roles (as the admin) and return a token of theirs."""
        role_args = [arg for role in roles for arg in ("--role", role)]
        added = self.cli("users", "add", name, *role_args)
        assert added.code == 0, added
        created = self.cli_json("token", "create", "--user", name)
        assert isinstance(created, dict)
        return str(created["token"])

    def cli_json(self, *args: str) -> object:
        result = self.cli(*args, "--json")
        assert result.code == 0, result
        return json.loads(result.out)

    def get(self, environment: str, app: str, path: str = "/") -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.app_url(environment, app, path), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


SERVE = """
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

time.sleep(float(os.environ.get("START_DELAY", "0")) or {delay})
VERSION = {version!r}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (VERSION + " " + os.environ.get("GREETING", "")).strip().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("request", self.path, flush=True)


print("serving", VERSION, flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

TEST = """
import os, urllib.request

def test_the_release_answers():
    with urllib.request.urlopen(os.environ["CONVEYOR_APP_URL"] + "/") as response:
        assert response.read().decode().startswith({version!r})
    assert {passes}
"""


def make_app(
    root: Path, version: str, *, delay: float = 0, tests_pass: bool = True, name: str = "hello"
) -> Path:
    """A small command app whose tests run against its own release (python's unittest-free
    runner: `python check.py`), so no test framework needs installing."""
    app = root / f"{name}-{version}"
    app.mkdir(parents=True)
    (app / "conveyor.yml").write_text(
        f"name: {name}\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
        "checks:\n  tests: python check.py\n"
    )
    (app / "serve.py").write_text(textwrap.dedent(SERVE.format(version=version, delay=delay)))
    (app / "check.py").write_text(
        textwrap.dedent(TEST.format(version=version, passes=tests_pass))
        + "\ntest_the_release_answers()\n"
    )
    return app


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
