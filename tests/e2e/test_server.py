"""The product end to end: a real `conveyor serve` process, the real CLI, real apps."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.storage import operations
from conveyor.storage.store import Store

from ..conftest import postgres_schema_url
from .server import CONVEYOR, Server, make_app, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgresql"])
def pipeline_server(request, tmp_path: Path) -> Iterator[Server]:
    """A real server on SQLite (its home's default) and on PostgreSQL (`--database-url`, a
    schema of its own on CONVEYOR_TEST_DATABASE_URL): the pipeline must behave the same."""
    urls = postgres_schema_url() if request.param == "postgresql" else iter([None])
    for url in urls:
        running = Server(tmp_path, arguments=("--database-url", url) if url else ())
        try:
            running.start()
            yield running
        finally:
            running.stop()


def bundle_of(server: Server, app: str, environment: str) -> str | None:
    status = server.cli_json("status")
    for cell in status["cells"]:
        if (cell["app"], cell["environment"]) == (app, environment):
            return cell["bundle"]
    return None


def test_dev_to_test_to_prod_and_a_failing_bundle_is_refused_by_prod(pipeline_server, tmp_path):
    server = pipeline_server
    deployed = server.cli("deploy", str(make_app(tmp_path, "v1")))
    assert deployed.code == 0, deployed
    assert "check tests: passed" in deployed.out and "release 1 is live in dev" in deployed.out
    assert server.cli("promote", "hello").code == 0  # dev -> test
    promoted = server.cli("promote", "hello", "--to", "prod")
    assert promoted.code == 0, promoted
    assert server.get("prod", "hello") == (200, "v1")
    v1 = bundle_of(server, "hello", "prod")
    assert v1 == bundle_of(server, "hello", "dev")  # one bundle, promoted unchanged

    failing = server.cli("deploy", str(make_app(tmp_path, "v2", tests_pass=False)), "--env", "test")
    assert failing.code == 1, failing
    assert "tests check failed" in failing.err
    [bad] = [
        r for r in server.cli_json("history", "hello", "--env", "test") if r["state"] == "failed"
    ]
    refused = server.cli("promote", "hello", "--to", "prod", "--bundle", bad["bundle"][:10])
    assert refused.code == 3, refused
    assert f"its tests check failed in release {bad['id']}" in refused.err
    assert "deploy a fixed bundle to test" in refused.err
    assert server.get("prod", "hello") == (200, "v1")
    assert server.get("test", "hello") == (200, "v1")  # the failed release never took traffic
    assert server.cli("deploy", str(make_app(tmp_path, "v3")), "--env", "prod").code == 3


def test_rollback_and_variables(pipeline_server, tmp_path):
    server = pipeline_server
    assert server.cli("deploy", str(make_app(tmp_path, "v1"))).code == 0
    assert server.cli("vars", "set", "hello", "GREETING=hi", "--env", "dev").code == 0
    assert server.cli("deploy", str(make_app(tmp_path, "v2"))).code == 0
    assert server.get("dev", "hello") == (200, "v2 hi")
    rolled = server.cli("rollback", "hello", "--env", "dev")
    assert rolled.code == 0, rolled
    assert server.get("dev", "hello") == (200, "v1 hi")
    history = server.cli_json("history", "hello", "--env", "dev")
    assert [r["kind"] for r in history] == ["rollback", "deploy", "deploy"]
    listed = server.cli("vars", "list", "hello", "--env", "dev")
    assert "GREETING" in listed.out and "hi" in listed.out
    logs = server.cli("logs", "hello", "--env", "dev")
    assert "serving v1" in logs.out


def test_secrets_are_never_shown(server, tmp_path):
    assert server.cli("deploy", str(make_app(tmp_path, "v1"))).code == 0
    assert (
        server.cli("vars", "set", "hello", "GREETING=s3cret-value", "--secret", "--env", "dev").code
        == 0
    )
    assert server.cli("deploy", str(make_app(tmp_path, "v2"))).code == 0
    assert server.get("dev", "hello") == (200, "v2 s3cret-value")  # the app gets it
    piped = server.cli(
        "vars", "set", "hello", "GREETING", "--secret", "--env", "dev", stdin="piped\n"
    )
    assert piped.code == 0 and "Warning" not in piped.err, piped
    assert server.cli("deploy", str(make_app(tmp_path, "v3"))).code == 0
    assert server.get("dev", "hello") == (200, "v3 piped")
    for args in (
        ("vars", "list", "hello", "--env", "dev", "--json"),
        ("diff", "hello", "dev", "test"),
        ("audit", "--json"),
    ):
        result = server.cli(*args)
        assert "s3cret-value" not in result.out + result.err, args
    assert "s3cret-value" not in server.log()


def test_approvals_when_the_policy_asks(tmp_path):
    server = Server(
        tmp_path,
        "environments:\n  dev: {{port: {dev}}}\n  test: {{port: {test}}}\n"
        "  prod: {{port: {prod}, approvals: 1, approver_not_deployer: true}}\n",
    )
    try:
        server.start()
        assert server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "test").code == 0
        refused = server.cli("promote", "hello", "--to", "prod")
        assert refused.code == 3 and "prod requires 1 approval" in refused.err, refused
        own = server.cli("approve", "hello", "--env", "prod")
        assert own.code == 0, own
        still = server.cli("promote", "hello", "--to", "prod")
        assert still.code == 3 and "who deployed it, do not count" in still.err, still
        assert server.cli("users", "add", "bob", "--role", "prod:approver").code == 0
        created = server.cli_json("token", "create", "--user", "bob")
        bob = created["token"]
        assert bob.startswith("cvt_") and created["user"] == "bob" and created["id"]
        assert (
            server.cli("approve", "hello", "--env", "prod", "--comment", "ok", token=bob).code == 0
        )
        assert server.cli("promote", "hello", "--to", "prod").code == 0
        assert server.get("prod", "hello") == (200, "v1")
    finally:
        server.stop()


def test_two_concurrent_promotions_one_wins_the_other_gets_a_conflict(server, tmp_path):
    assert server.cli("deploy", str(make_app(tmp_path, "v1", delay=3))).code == 0
    results = []

    def promote() -> None:
        results.append(server.cli("promote", "hello", "--to", "test"))

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r.code for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r.code == 1)
    assert "busy" in loser.err and "is running" in loser.err, loser
    assert server.get("test", "hello") == (200, "v1")


def test_api_requests_without_a_valid_token_are_refused(server):
    for headers in ({}, {"Authorization": "Bearer cvt_not-a-token"}):
        request = urllib.request.Request(server.url + "/api/v1/status", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401
        assert json.loads(caught.value.read())["error"]["code"] == "unauthorized"
    result = server.cli("status", token="cvt_not-a-token")
    assert result.code == 4 and "token is not valid" in result.err
    with urllib.request.urlopen(server.url + "/api/v1/openapi.json", timeout=10) as response:
        paths = json.loads(response.read())["paths"]
    assert "/api/v1/apps/{app}/environments/{environment}/deploys" in paths


def test_the_first_admin_token_stays_out_of_the_log_and_the_home_is_private(server):
    credentials = Path(server.env["CONVEYOR_CREDENTIALS"])
    token = json.loads(credentials.read_text())["servers"][server.url]["token"]
    assert token.startswith("cvt_")
    assert token not in server.log()
    assert f"saved their API token to {credentials}" in server.log()
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o700
    for name in ("conveyor.db", "keys.json"):
        assert stat.S_IMODE((server.home / name).stat().st_mode) == 0o600, name
    me = server.cli_json("whoami")
    assert me["admin"] is True


def test_a_home_others_can_read_is_made_private_on_start(server):
    server.stop()
    os.chmod(server.home, 0o755)
    os.chmod(server.home / "conveyor.db", 0o644)
    server.start()
    assert "made " + str(server.home) + " private to its owner (it was 0755, now 0700)" in (
        server.log()
    )
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((server.home / "conveyor.db").stat().st_mode) == 0o600


def processes_under(directory: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").readlink()
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(int(entry.name))
    return found


def test_sigkill_mid_operation_then_restart_serves_the_previous_release(pipeline_server, tmp_path):
    server = pipeline_server
    assert server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "test").code == 0
    assert server.cli("promote", "hello", "--to", "prod").code == 0
    # v2 takes 60 s to start: the server is killed while its deploy is in flight.
    slow = subprocess.Popen(
        [CONVEYOR, "deploy", str(make_app(tmp_path, "v2", delay=60)), "--env", "test"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        starting = None
        while starting is None and time.monotonic() < deadline:
            history = server.cli_json("history", "hello", "--env", "test")
            starting = next((r for r in history if r["state"] == "starting"), None)
            time.sleep(0.3)
        assert starting is not None, "the v2 release never started"
        release_dir = server.home / "releases" / str(starting["id"])
        wait_for(lambda: processes_under(release_dir), "the v2 process to run")
        server.kill()
        assert slow.wait(60) == 1  # the CLI says it lost the server
        assert "could not reach the Conveyor server" in (slow.stdout.read() if slow.stdout else "")
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
        if slow.stdout is not None:
            slow.stdout.close()

    server.start()
    # v1 in test and prod, and the half-started v2: all three stopped by their records (each
    # worker is one process, or three in a sandbox: bubblewrap, its init, the app).
    reaped = re.search(r"stopped (\d+) app process\(es\) a previous server left", server.log())
    assert reaped is not None and int(reaped.group(1)) in (3, 9), server.log()
    assert processes_under(release_dir) == []
    assert server.get("prod", "hello") == (200, "v1")
    assert server.get("test", "hello") == (200, "v1")
    history = server.cli_json("history", "hello", "--env", "test")
    interrupted = next(r for r in history if r["id"] == starting["id"])
    assert interrupted["state"] == "failed"
    assert interrupted["reason"] == "the server stopped while it was starting"
    arguments = dict(zip(server.arguments[::2], server.arguments[1::2], strict=True))
    store = Store.open(server.home, arguments.get("--database-url"))  # the server's own store
    try:
        states = {
            operations.get_operation(store.engine, number).state.value for number in range(1, 4)
        }
    finally:
        store.close()
    assert states == {"succeeded", "interrupted"}
    assert server.cli("audit", "verify").code == 0
    # And the pipeline goes on: a fixed v3 deploys where v2 was cut off.
    assert server.cli("deploy", str(make_app(tmp_path, "v3")), "--env", "test").code == 0
    assert server.get("test", "hello") == (200, "v3")
