"""Retention through the real CLI against a real server: an app deployed seven times, `conveyor
gc --dry-run --json` removes nothing, `conveyor gc` removes the old releases' bundles and the
runtime only they used and says how much it freed; a rollback to a kept release still serves,
one to a removed release says what happened; and only admins may run it."""

from __future__ import annotations

import textwrap
import urllib.request
from pathlib import Path

import pytest

from .server import Server

pytestmark = pytest.mark.e2e

SERVE = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"version {version}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


@pytest.fixture
def server(tmp_path: Path):
    running = Server(tmp_path)
    try:
        running.start(arguments=["--keep-releases", "2"])
        yield running
    finally:
        running.stop()


def test_gc_removes_old_releases_and_rollback_still_works(server, tmp_path):
    app = tmp_path / "hello"
    app.mkdir()
    (app / "conveyor.yml").write_text(
        "name: hello\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
    )
    for version in range(1, 8):
        # Versions 1 and 2 lock other requirements: a runtime of their own.
        (app / "requirements.txt").write_text("# old\n" if version <= 2 else "# new\n")
        (app / "serve.py").write_text(textwrap.dedent(SERVE.format(version=version)))
        done = server.cli("deploy", str(app), "--env", "dev")
        assert done.code == 0, done
    found = server.cli_json("history", "hello", "--env", "dev")
    assert isinstance(found, list)
    released = sorted(r["id"] for r in found)
    assert page(server.app_url("dev", "hello")) == "version 7"
    runtimes = [p for p in (server.home / "runtimes").iterdir() if len(p.name) == 64]
    assert len(runtimes) == 2
    blobs = sorted(p for p in (server.home / "blobs").rglob("*") if p.is_file())

    # A dry run says what would go and removes nothing.
    dry = server.cli_json("gc", "--dry-run")
    assert isinstance(dry, dict) and dry["dry_run"] is True
    going = [i["what"] for i in dry["groups"]["releases"]["items"]]
    assert going == [f"release {r} of hello in dev" for r in released[:4]]
    assert len(dry["groups"]["bundles"]["items"]) == 4
    assert len(dry["groups"]["runtimes"]["items"]) == 1
    assert dry["freed_bytes"] > 0
    assert sorted(p for p in (server.home / "blobs").rglob("*") if p.is_file()) == blobs
    assert all(r.exists() for r in runtimes)

    # The real thing: old releases' bundles and the runtime only they used.
    gc = server.cli("gc")
    assert gc.code == 0, gc
    assert "4 releases, 1 runtime, 4 bundles" in gc.out and "freed" in gc.out, gc
    assert "release 1 of hello in dev" in gc.out
    left = [p for p in (server.home / "blobs").rglob("*") if p.is_file()]
    assert len(left) == len(blobs) - 4
    assert sum(r.exists() for r in runtimes) == 1
    history = server.cli("history", "hello", "--env", "dev")
    assert "(files removed)" in history.out, history
    again = server.cli_json("gc", "--dry-run")
    assert isinstance(again, dict)
    # Nothing more of this server's. (The runtimes' shared bytecode store sits beside the uv
    # cache the whole test suite shares: other tests' throwaway runtimes leave files there.)
    assert {g for g, found in again["groups"].items() if found["items"]} <= {"bytecode"}, again

    # Rollback to a kept release starts it from its bundle and runtime, and it serves.
    back = server.cli("rollback", "hello", "--env", "dev", "--to", str(released[4]))
    assert back.code == 0, back
    assert page(server.app_url("dev", "hello")) == "version 5"
    # To a removed one: a clear refusal, and version 5 keeps serving.
    refused = server.cli("rollback", "hello", "--env", "dev", "--to", str(released[0]))
    assert refused.code != 0
    assert f"release {released[0]}'s files were removed by `conveyor gc`" in refused.err, refused
    assert "Traceback" not in refused.err
    assert page(server.app_url("dev", "hello")) == "version 5"

    # Only admins: a developer is refused, and nothing is removed.
    developer = server.user("dana", "dev:developer")
    denied = server.cli("gc", token=developer)
    assert denied.code == 4 and "it needs an admin" in denied.err, denied
    audit = server.cli("audit", "--json")
    assert audit.code == 0 and audit.out.count('"server.gc"') == 1, audit
