"""Adapter details a user relies on: `$PORT` in a command's entrypoint, a static site at
the bundle's root that does not serve Conveyor's own files, and a worker's port answered only
by the worker."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
import urllib.error
import urllib.request

import pytest

from conveyor.runtime import local
from conveyor.services.pipeline import deploy

pytestmark = pytest.mark.e2e


def status_of(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_a_command_entrypoint_may_name_port(platform, tmp_path):
    app = tmp_path / "files"
    app.mkdir()
    (app / "conveyor.yml").write_text(
        "name: files\ntype: command\nentrypoint: python -m http.server ${PORT} --bind 127.0.0.1\n"
    )
    (app / "hello.txt").write_text("hello from files\n")
    outcome = deploy(platform.services, "files", platform.upload(app), "dev", "ana")
    assert outcome.live, outcome.message
    assert status_of(platform.url("dev", "files", "/hello.txt")) == (200, "hello from files\n")


def test_a_static_site_at_the_bundle_root_keeps_conveyor_files_private(platform, tmp_path):
    app = tmp_path / "site"
    app.mkdir()
    (app / "conveyor.yml").write_text("name: site\ntype: static\n")
    (app / "index.html").write_text("<h1>Welcome</h1>\n")
    (app / "style.css").write_text("h1 {color: teal}\n")
    outcome = deploy(platform.services, "site", platform.upload(app), "dev", "ana")
    assert outcome.live, outcome.message
    assert status_of(platform.url("dev", "site", "/")) == (200, "<h1>Welcome</h1>\n")
    assert status_of(platform.url("dev", "site", "/style.css"))[0] == 200
    for private in ("/conveyor.yml", "/conveyor.lock"):
        assert status_of(platform.url("dev", "site", private))[0] == 404


def test_a_static_site_without_index_html_fails_clearly(platform, tmp_path):
    app = tmp_path / "bare"
    app.mkdir()
    (app / "conveyor.yml").write_text("name: bare\ntype: static\n")
    (app / "page.html").write_text("<p>no index</p>\n")
    outcome = deploy(platform.services, "bare", platform.upload(app), "dev", "ana")
    assert not outcome.live
    assert "has no index.html" in outcome.release.reason


def deploy_command(platform, tmp_path, name: str, serve: str):
    """Deploy to dev a command app `python serve.py` (health `/`) whose serve.py is ``serve``."""
    app = tmp_path / name
    app.mkdir()
    (app / "conveyor.yml").write_text(
        f"name: {name}\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
    )
    (app / "serve.py").write_text(serve)
    return deploy(platform.services, name, platform.upload(app), "dev", "ana")


def test_a_server_outside_the_workers_process_group_is_refused(platform, tmp_path):
    """The health check passes only against the worker itself: here the worker starts its
    server in a session of its own (setsid) and waits, so what answers on its port is not in
    its process group, as a process that took the port before the worker could bind it would
    not be either. The release does not go live, and says why."""
    detach = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-m', 'http.server', os.environ['PORT'],\n"
        "                  '--bind', '127.0.0.1'], start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    outcome = deploy_command(platform, tmp_path, "detached", detach)
    assert not outcome.live
    assert "is answered by a process that is not the app's worker" in outcome.message


def test_a_slow_squatter_on_the_workers_port_never_goes_live(platform, tmp_path, monkeypatch):
    """A process holds the port before the worker can bind it and answers the health check
    slowly: the worker fails to bind and exits while that check is in flight. The start fails
    with how the worker exited; the squatter's answer is never served."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(2)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"squatter\n")

        def log_message(self, format: str, *args: object) -> None:
            return

    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(local, "free_port", lambda: squatter.server_address[1])
        app = tmp_path / "files"
        app.mkdir()
        (app / "conveyor.yml").write_text(
            "name: files\ntype: command\nentrypoint: python -m http.server ${PORT} "
            "--bind 127.0.0.1\n"
        )
        outcome = deploy(platform.services, "files", platform.upload(app), "dev", "ana")
        assert not outcome.live
        assert "the app exited while starting" in outcome.message
    finally:
        squatter.shutdown()
        squatter.server_close()


CRASHING = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            os._exit(3)
        body = (os.environ["PORT"] if self.path == "/port" else "app").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.mark.parametrize("speaks", ["http", "not http"])
def test_a_crashed_workers_port_gets_no_traffic_until_the_worker_is_back(
    platform, tmp_path, speaks
):
    """Between a crash and a healthy restart the worker is out of the route: a process that
    takes its port meanwhile (another app, say) gets none of the release's requests, which
    get the 502 page; once the port is free again the restarted worker is routed again. A
    squatter that does not even speak HTTP does not stop the worker's supervision."""
    outcome = deploy_command(platform, tmp_path, "crashy", CRASHING)
    assert outcome.live, outcome.message
    port = int(status_of(platform.url("dev", "crashy", "/port"))[1])
    with contextlib.suppress(urllib.error.URLError, ConnectionError):
        status_of(platform.url("dev", "crashy", "/crash"))

    class Squatter(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if speaks != "http":
                self.wfile.write(b"SSH-2.0-squatter\r\n")
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"squatter")

        def log_message(self, format: str, *args: object) -> None:
            return

    squatter = None
    deadline = time.monotonic() + 5
    while squatter is None and time.monotonic() < deadline:
        try:
            squatter = http.server.ThreadingHTTPServer(("127.0.0.1", port), Squatter)
        except OSError:
            time.sleep(0.01)  # the worker still holds it, or its restart took it back
    if squatter is None:
        pytest.skip("the restarted worker bound its port before the squatter could")
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        answers = [status_of(platform.url("dev", "crashy", "/")) for _ in range(20)]
        assert all(status == 502 for status, _ in answers), answers
    finally:
        squatter.shutdown()
        squatter.server_close()
    deadline = time.monotonic() + 60
    while status_of(platform.url("dev", "crashy", "/")) != (200, "app"):
        assert time.monotonic() < deadline, "the restarted worker was not routed again"
        time.sleep(0.2)


SLOW_AFTER_A_CRASH = """\
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conveyor import data

crashed, slowed = data.output_path("crashed"), data.output_path("slowed")
slow_until = 0.0
if crashed.exists() and not slowed.exists():
    slowed.write_text("once")
    slow_until = time.monotonic() + 4  # a dependency is not back yet


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            crashed.write_text("yes")
            os._exit(3)
        status = 503 if time.monotonic() < slow_until else 200
        self.send_response(status)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"app")


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_restart_slower_than_the_health_timeout_is_restarted_not_left_out(platform, tmp_path):
    """After a crash the restarted worker is not healthy within the health timeout (here 2 s):
    it is stopped and restarted again (as a crash), not left running outside the route for
    good; the next restart is healthy and routed."""
    platform.runtime.health_timeout = 2
    outcome = deploy_command(platform, tmp_path, "slowstart", SLOW_AFTER_A_CRASH)
    assert outcome.live, outcome.message
    with contextlib.suppress(urllib.error.URLError, ConnectionError):
        status_of(platform.url("dev", "slowstart", "/crash"))
    deadline = time.monotonic() + 30
    while status_of(platform.url("dev", "slowstart", "/")) != (200, "app"):
        assert time.monotonic() < deadline, platform.runtime.read_log(outcome.release.id)[1]
        time.sleep(0.2)
    _, log = platform.runtime.read_log(outcome.release.id)
    assert "did not pass its health check / within 2 s of its restart" in log
