"""The smoke test `conveyor init` writes works as Conveyor runs it: `python -m pytest -q tests`
in the app's directory, with CONVEYOR_APP_URL pointing at a running app."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.scaffold.files import SMOKE_TEST, TESTS_COMMAND, smoke_test


class _App(http.server.BaseHTTPRequestHandler):
    statuses: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        status = self.statuses.get(self.path, 404)
        body = b"ok" if status == 200 else b"broken"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def app_url() -> Iterator[str]:
    """A running app under /hello (as a release is reached through its prefix)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hello"
    finally:
        server.shutdown()
        server.server_close()


def _run_tests(directory: Path, app_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONVEYOR_"))}
    if app_url:
        env["CONVEYOR_APP_URL"] = app_url
    command = TESTS_COMMAND.replace("python", sys.executable, 1).split()
    return subprocess.run(
        [*command, "-p", "no:cacheprovider"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _app_with_smoke_test(tmp_path: Path, health: str) -> Path:
    path = tmp_path / "app" / SMOKE_TEST
    path.parent.mkdir(parents=True)
    path.write_text(smoke_test(health), encoding="utf-8")
    return tmp_path / "app"


def test_it_passes_when_the_health_path_answers_200(tmp_path, app_url, monkeypatch):
    monkeypatch.setattr(_App, "statuses", {"/hello/health": 200})
    result = _run_tests(_app_with_smoke_test(tmp_path, "/health"), app_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_it_fails_saying_what_the_app_answered(tmp_path, app_url, monkeypatch):
    monkeypatch.setattr(_App, "statuses", {"/hello/": 500})
    result = _run_tests(_app_with_smoke_test(tmp_path, "/"), app_url)
    assert result.returncode == 1
    assert "GET / answered 500: broken" in result.stdout


def test_without_a_running_app_it_is_skipped(tmp_path):
    result = _run_tests(_app_with_smoke_test(tmp_path, "/"), None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


def test_it_imports_only_pytest_and_the_standard_library():
    import ast

    tree = ast.parse(smoke_test("/"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - set(sys.stdlib_module_names) == {"pytest"}
