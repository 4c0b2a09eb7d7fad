"""Zero-downtime switches with real processes and real traffic, and failures that leave the
live release serving every request."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from conveyor.domain.releases import ReleaseState
from conveyor.services.pipeline import deploy, rollback

from .load import Load

pytestmark = pytest.mark.e2e

SERVER = """
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = {version!r}
MODE = {mode!r}
if MODE == "exits":
    sys.exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz" and MODE == "unhealthy":
            status, body = 500, b"not ready"
        elif self.path == "/env":
            status, body = 200, "\\n".join(sorted(os.environ)).encode()
        else:
            time.sleep(0.005)
            status, body = 200, VERSION.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_app(root: Path, version: str, mode: str = "ok", tests: str | None = None) -> Path:
    app = root / f"pinger-{version}-{mode}"
    app.mkdir(parents=True)
    checks = f"checks:\n  tests: {tests}\n" if tests else ""
    (app / "conveyor.yml").write_text(
        f"name: pinger\ntype: command\nentrypoint: python serve.py\nhealth: /healthz\n{checks}"
    )
    (app / "serve.py").write_text(textwrap.dedent(SERVER.format(version=version, mode=mode)))
    return app


def test_continuous_requests_across_repeated_switches_never_fail(platform, tmp_path):
    versions = [platform.upload(make_app(tmp_path, v)) for v in ("v1", "v2")]
    assert deploy(platform.services, "pinger", versions[0], "dev", "ana").live
    with Load(platform.url("dev", "pinger", "/")) as load:
        for round_ in range(4):
            time.sleep(0.3)
            outcome = deploy(platform.services, "pinger", versions[(round_ + 1) % 2], "dev", "ana")
            assert outcome.live, outcome.message
        time.sleep(0.3)
    assert load.failures == []
    assert set(load.answers) == {"v1", "v2"}
    assert load.total > 100


@pytest.mark.parametrize(
    ("mode", "tests", "reason"),
    [
        ("unhealthy", None, "health check /healthz did not pass"),
        ("exits", None, "exited while starting"),
        ("ok", "python -c 'raise SystemExit(1)'", "tests check failed"),
    ],
)
def test_a_failing_release_leaves_the_live_one_answering_every_request(
    platform, tmp_path, mode, tests, reason
):
    platform.runtime.health_timeout = 5
    good = platform.upload(make_app(tmp_path, "good"))
    live = deploy(platform.services, "pinger", good, "dev", "ana").release
    bad = platform.upload(make_app(tmp_path, "bad", mode, tests))
    with Load(platform.url("dev", "pinger", "/")) as load:
        outcome = deploy(platform.services, "pinger", bad, "dev", "ana")
        time.sleep(0.2)
    assert not outcome.live
    assert outcome.release.state is ReleaseState.FAILED
    assert reason in outcome.release.reason
    assert load.failures == []
    assert set(load.answers) == {"good"}
    assert platform.runtime.supervisor.is_running(live.id)
    assert not platform.runtime.supervisor.is_running(outcome.release.id)


def test_apps_get_only_the_variables_they_are_given(platform, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SECRET_TOKEN", "must-not-leak")
    deploy(platform.services, "pinger", platform.upload(make_app(tmp_path, "v1")), "test", "ana")
    import urllib.request

    with urllib.request.urlopen(platform.url("test", "pinger", "/env"), timeout=10) as response:
        names = set(response.read().decode().split())
    assert "SERVER_SECRET_TOKEN" not in names
    assert {"CONVEYOR_ENV", "R_CONFIG_ACTIVE", "PORT"} <= names
    assert not any(name.startswith("UV_") for name in names)


def test_rollback_switches_back_without_failures(platform, tmp_path):
    first = platform.upload(make_app(tmp_path, "v1"))
    deploy(platform.services, "pinger", first, "dev", "ana")
    deploy(platform.services, "pinger", platform.upload(make_app(tmp_path, "v2")), "dev", "ana")
    with Load(platform.url("dev", "pinger", "/")) as load:
        assert rollback(platform.services, "pinger", "dev", "ana").live
        time.sleep(0.3)
    assert load.failures == []
    assert "v1" in load.answers
