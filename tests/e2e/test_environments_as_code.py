"""Environments as code against a real server: plan shows exactly what apply changes, apply
round-trips, a stale plan is refused, and a managed server refuses ad-hoc changes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .server import Server, free_port, make_app, wait_for

pytestmark = pytest.mark.e2e


def put_policy(server: Server, name: str, policy: dict[str, object]) -> tuple[int, dict]:
    token = json.loads(Path(server.env["CONVEYOR_CREDENTIALS"]).read_text())["servers"][server.url][
        "token"
    ]
    request = urllib.request.Request(
        f"{server.url}/api/v1/environments/{name}/policy",
        data=json.dumps(policy).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def declared(server: Server, staging_port: int, approvals: int = 1) -> str:
    ports = server.ports
    return (
        "environments:\n"
        f"  dev: {{port: {ports['dev']}}}\n"
        f"  test:\n    port: {ports['test']}\n"
        "    variables: {REGION: west, DEBUG: false}\n"
        "    secrets: {API_KEY: '${TEST_API_KEY}'}\n"
        f"  staging: {{port: {staging_port}, promotes_from: test}}\n"
        f"  prod: {{port: {ports['prod']}, promotes_from: staging, direct_deploys: false,"
        f" approvals: {approvals}}}\n"
    )


def test_plan_apply_round_trip_stale_plans_and_managed_refusals(server, tmp_path):
    file = tmp_path / "environments.yml"
    staging = free_port()
    file.write_text(declared(server, staging))
    # Started with an environments file, the server is managed by it: nothing else applies.
    status, body = put_policy(server, "prod", {"direct_deploys": False, "promotes_from": "test"})
    assert status == 403 and str(server.environments_file) in body["error"]["message"]
    locked = server.cli("apply", str(file))
    assert locked.code == 3, locked
    assert f"managed by the server's own file {server.environments_file}" in locked.err
    server.stop()
    server.start(with_file=False)  # now `conveyor apply` is how they change

    planned = server.cli("plan", str(file))
    assert planned.code == 2, planned
    assert "+ staging: new environment" in planned.out
    assert "~ prod.policy.approvals: 0 -> 1" in planned.out
    assert "~ prod.policy.promotes_from: test -> staging" in planned.out
    assert "~ test.variables.REGION: (none) -> west" in planned.out
    assert "~ test.secrets.API_KEY: (none) -> ${TEST_API_KEY}" in planned.out  # a reference
    fingerprint = planned.out.split("--expect ")[1].split()[0]

    applied = server.cli("apply", str(file), "--expect", fingerprint)
    assert applied.code == 0, applied
    assert f"staging listens on http://127.0.0.1:{staging}" in applied.out
    again = server.cli("plan", str(file))
    assert again.code == 0 and "no changes" in again.out  # round trip
    assert server.cli("apply", str(file), "--expect", fingerprint).code == 1  # now stale

    # The server changed since a plan was shown: that plan is not applied.
    file.write_text(declared(server, staging, approvals=2))
    old = server.cli("plan", str(file)).out.split("--expect ")[1].split()[0]
    file.with_name("meanwhile.yml").write_text(declared(server, staging, approvals=3))
    assert server.cli("apply", str(file.with_name("meanwhile.yml"))).code == 0
    refused = server.cli("apply", str(file), "--expect", old)
    assert refused.code == 1 and "changed since that plan was made" in refused.err

    # Managed: ad-hoc changes are refused with a pointer to the file.
    status, body = put_policy(
        server, "prod", {"direct_deploys": False, "promotes_from": "staging", "approvals": 0}
    )
    assert status == 403
    message = body["error"]["message"]
    assert "managed from" in message and "conveyor apply" in message
    events = server.cli_json("audit")
    # The server start applied its own file; then the two applies above.
    assert [e["action"] for e in events].count("environments.apply") == 3


def test_environment_variables_and_secret_references_reach_the_apps(server, tmp_path):
    server.stop()
    server.env["TEST_API_KEY"] = "k-123"
    server.start(with_file=False)
    file = tmp_path / "environments.yml"
    file.write_text(declared(server, free_port()))
    assert server.cli("apply", str(file)).code == 0
    app = make_app(tmp_path, "v1")
    (app / "serve.py").write_text(
        (app / "serve.py")
        .read_text()
        .replace(
            '(VERSION + " " + os.environ.get("GREETING", "")).strip()',
            '(os.environ["REGION"] + " " + os.environ["API_KEY"])',
        )
    )
    (app / "conveyor.yml").write_text(
        "name: hello\ntype: command\nentrypoint: python serve.py\nhealth: /\n"
    )
    assert server.cli("deploy", str(app), "--env", "test").code == 0
    assert server.get("test", "hello") == (200, "west k-123")
    assert "k-123" not in server.cli("plan", str(file)).out


def test_a_new_sleep_after_applies_to_the_releases_already_running(server, tmp_path):
    """Dev's apps sleep after 15 minutes by default; the platform engineers apply 3 s: the
    release already live in dev sleeps after 3 s idle, without a new deploy or a restart, and
    its log says why."""
    server.stop()
    server.start(with_file=False)
    assert server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "dev").code == 0
    assert server.get("dev", "hello")[0] == 200

    def sleeping() -> bool:
        found = server.cli_json("status")
        assert isinstance(found, dict)
        return any(c["app"] == "hello" and c["sleeping"] for c in found["cells"])

    assert not sleeping()
    file = tmp_path / "environments.yml"
    ports = server.ports
    file.write_text(
        "environments:\n"
        f"  dev: {{port: {ports['dev']}, sleep_after: 3s}}\n"
        f"  test: {{port: {ports['test']}}}\n"
        f"  prod: {{port: {ports['prod']}}}\n"
    )
    assert server.cli("apply", str(file)).code == 0
    wait_for(sleeping, "the running release to sleep after the new 3 s", timeout=60)
    logs = server.cli("logs", "hello", "--env", "dev").out
    assert "dev's settings changed: it sleeps after 3 s without requests" in logs
    assert server.get("dev", "hello")[0] == 200  # and it wakes as ever
