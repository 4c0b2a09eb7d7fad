"""The commands people meet, run as a person runs them (`conveyor ...`, in process) against the
real API served in process (tests/cli/conftest.py): what they print, and the exit code each
kind of failure ends with. Runs on SQLite and on PostgreSQL; fast, not end to end (the in-memory
runtime starts nothing)."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import httpx
from sqlalchemy import insert

from conveyor.domain.environments import Policy
from conveyor.services import environments
from conveyor.storage import schema
from conveyor.storage.log_lines import PAGE_LINES
from conveyor.storage.store import now


def test_deploy_status_history_logs_promote_approve_and_rollback(live, conveyor):
    code, out, err = conveyor("deploy", str(live.app_dir("1")))
    assert code == 0, err
    assert "uploading bundle" in err and "operation 1: deploy of hello to dev" in err
    assert "release 1 is live in dev" in out
    code, out, err = conveyor("logs", "hello", "--env", "dev")
    assert (code, out) == (0, "hello release 1 listening\n"), err

    # The same tree again: the server has the bundle, and it is live already.
    code, out, err = conveyor("deploy", str(live.app_dir("1")))
    assert code == 0, err
    assert "the server already has bundle" in err

    code, out, err = conveyor("status")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["APP", "DEV", "TEST", "PROD"]
    assert out.splitlines()[1].startswith("hello") and "✓" in out.splitlines()[1]
    code, out, _ = conveyor("status", "--json")
    status = json.loads(out)
    [cell] = status["cells"]
    assert (cell["app"], cell["environment"], cell["state"]) == ("hello", "dev", "live")
    bundle = cell["bundle"]

    code, out, err = conveyor("promote", "hello", "--to", "test")
    assert code == 0, err
    assert "promote of hello to test" in err and "is live in test" in out

    # Prod asks for an approval: without one the promotion is refused (exit 3).
    environments.set_policy(
        live.services, "prod", Policy(direct_deploys=False, promotes_from="test", approvals=1), "t"
    )
    code, out, err = conveyor("promote", "hello", "--to", "prod")
    assert code == 3, (out, err)
    assert "approval" in err and "Traceback" not in err
    code, out, err = conveyor("approve", "hello", "--env", "prod", "--comment", "looks right")
    assert code == 0, err
    assert f"approved bundle {bundle[:10]} of hello for prod (by root)" in out
    code, out, err = conveyor("promote", "hello", "--to", "prod")
    assert code == 0, err

    code, out, err = conveyor("deploy", str(live.app_dir("2")))
    assert code == 0, err
    code, out, err = conveyor("history", "hello", "--env", "dev")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:4] == ["RELEASE", "ENV", "BUNDLE", "KIND"]
    ids = [int(row[0]) for row in rows[1:]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)  # newest first
    assert {row[1] for row in rows[1:]} == {"dev"}
    code, out, err = conveyor("history", "hello", "--json")
    assert {r["environment"] for r in json.loads(out)} == {"dev", "test", "prod"}

    code, out, err = conveyor("rollback", "hello", "--env", "dev")
    assert code == 0, err
    assert "rollback of hello to dev" in err
    code, out, _ = conveyor("status", "--json")
    dev = next(c for c in json.loads(out)["cells"] if c["environment"] == "dev")
    assert dev["bundle"] == bundle


def test_variables_are_set_and_listed_with_secrets_masked(live, conveyor):
    assert conveyor("deploy", str(live.app_dir()))[0] == 0
    code, out, err = conveyor("vars", "set", "hello", "GREETING=hi", "--env", "dev")
    assert code == 0, err
    assert "set variable GREETING for hello in dev" in out
    code, out, err = conveyor("vars", "set", "hello", "TOKEN=s3cret", "--env", "dev", "--secret")
    assert code == 0, err
    code, out, err = conveyor("vars", "list", "hello", "--env", "dev")
    assert code == 0, err
    assert "GREETING" in out and "hi" in out and "TOKEN" in out and "s3cret" not in out
    code, out, _ = conveyor("vars", "list", "hello", "--env", "dev", "--json")
    assert "s3cret" not in out and {v["name"] for v in json.loads(out)} == {"GREETING", "TOKEN"}


def test_whoami_users_and_tokens(live, conveyor):
    code, out, err = conveyor("whoami", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "root" and json.loads(out)["admin"] is True
    code, out, err = conveyor("users", "add", "ana", "--role", "dev:deployer")
    assert code == 0, err
    code, out, err = conveyor("users", "list", "--json")
    assert {u["name"]: u["roles"] for u in json.loads(out)}["ana"] == ["dev:deployer"]
    code, out, err = conveyor("users", "grant", "ana", "test:viewer")
    assert code == 0, err
    code, out, err = conveyor("token", "create", "--user", "ana", "--json")
    assert code == 0, err
    token = json.loads(out)["token"]

    live.use_token(token)
    code, out, err = conveyor("whoami")
    assert code == 0, err
    assert "ana" in out
    code, out, err = conveyor("token", "list", "--json")
    assert [t["user"] for t in json.loads(out)] == ["ana"]  # one's own tokens only
    code, out, err = conveyor("users", "list")
    assert code == 4 and "it needs an admin" in err


def test_a_job_is_scheduled_and_run(live, conveyor):
    assert conveyor("deploy", str(live.app_dir(kind="job", name="refresh")))[0] == 0
    code, out, err = conveyor("schedule", "set", "refresh", "--env", "dev", "0 6 * * 1-5")
    assert code == 0, err
    assert "refresh in dev: 0 6 * * 1-5 (UTC)" in out
    code, out, err = conveyor("schedule", "show", "refresh", "--json")
    dev = next(s for s in json.loads(out) if s["environment"] == "dev")
    assert (dev["cron"], dev["active"]) == ("0 6 * * 1-5", False)  # dev: paused
    assert dev["source"] == "set by root"
    code, out, err = conveyor("run", "refresh", "--env", "dev")
    assert code == 0, err
    assert "run 1 of refresh in dev" in err and "run 1 succeeded" in out
    code, out, err = conveyor("runs", "refresh", "--env", "dev", "--json")
    assert [(r["id"], r["state"], r["trigger"]) for r in json.loads(out)] == [
        (1, "succeeded", "manual")
    ]
    code, out, err = conveyor("schedule", "unset", "refresh", "--env", "dev")
    assert code == 0 and "refresh in dev: no schedule" in out


def test_a_long_run_log_is_printed_whole_though_the_api_sends_it_a_page_at_a_time(live, conveyor):
    assert conveyor("deploy", str(live.app_dir(kind="job", name="refresh")))[0] == 0
    assert conveyor("run", "refresh", "--env", "dev")[0] == 0
    count = 12_000  # more than two of the API's pages (5000 lines)
    with live.services.store.transaction() as connection:
        connection.execute(
            insert(schema.run_log),
            [{"run": 1, "at": now(), "line": f"row {n}"} for n in range(count)],
        )
    page = httpx.get(
        f"{live.url}/api/v1/apps/refresh/environments/dev/runs/1",
        headers={"Authorization": f"Bearer {live.admin_token}"},
    ).json()
    assert len(page["log"]) == PAGE_LINES
    code, out, err = conveyor("runs", "refresh", "--env", "dev", "--log", "1")
    assert code == 0, err
    assert [line.split("  ", 1)[1] for line in out.splitlines()][-count:] == [
        f"row {n}" for n in range(count)
    ]


def test_gc_dry_run_says_what_it_would_remove(live, conveyor):
    for version in ("1", "2"):
        assert conveyor("deploy", str(live.app_dir(version)))[0] == 0
    code, out, err = conveyor("gc", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True
    code, out, err = conveyor("gc", "--dry-run")
    assert code == 0, err
    assert out.startswith("kept: ")


def test_prod_refuses_a_direct_deploy_with_exit_code_3(live, conveyor):
    code, out, err = conveyor("deploy", str(live.app_dir()), "--env", "prod")
    assert code == 3, (out, err)
    assert "prod takes no direct deploys" in err and "Traceback" not in err


def test_a_missing_role_is_exit_code_4_naming_the_role(live, conveyor):
    assert conveyor("deploy", str(live.app_dir()))[0] == 0
    live.use_token(live.token_of("vic", "dev:viewer"))
    code, out, err = conveyor("deploy", str(live.app_dir()))
    assert code == 4, (out, err)
    assert "needs the developer role" in err and "conveyor users grant vic dev:developer" in err
    live.use_token(live.token_of("dee", "dev:developer"))
    code, out, err = conveyor("promote", "hello", "--to", "test")
    assert code == 4, (out, err)
    assert "dee may not" in err and "test:" in err and "Traceback" not in err
    code, out, err = conveyor("gc", "--dry-run")
    assert code == 4 and "it needs an admin" in err


def test_no_or_a_wrong_token_is_exit_code_4(live, conveyor):
    live.use_token("cvt_not-a-token")
    code, out, err = conveyor("status")
    assert code == 4 and "token" in err and "Traceback" not in err
    live.use_token(None)
    code, out, err = conveyor("status")
    assert code == 4 and "conveyor login" in err


def test_a_wrong_command_line_is_exit_code_64(live, conveyor):
    assert conveyor("rollback", "hello")[0] == 64  # --env is required
    assert conveyor("deploy", "--no-such-option")[0] == 64
    code, out, err = conveyor("vars", "set", "hello", "GREETING", "--env", "dev")
    assert code == 64 and "NAME=VALUE" in err
    assert conveyor("runs", "hello", "--env", "dev", "--limit", "many")[0] == 64


def test_unknown_apps_and_environments_are_named(live, conveyor):
    code, out, err = conveyor("history", "nope")
    assert code == 1 and "nope" in err and "Traceback" not in err
    code, out, err = conveyor("logs", "nope", "--env", "dev")
    assert code == 1 and "nothing of nope is live in dev" in err
    code, out, err = conveyor("deploy", str(live.app_dir()), "--env", "staging")
    assert code == 1 and "there is no environment 'staging'" in err
    assert "dev, test, prod" in err
    code, out, err = conveyor("vars", "list", "hello", "--env", "staging")
    assert code == 1 and "there is no environment 'staging'" in err
    code, out, err = conveyor("promote", "nope", "--to", "test")
    assert code == 1 and "nope" in err and "Traceback" not in err


def test_numbers_the_server_cannot_take_are_named_not_a_server_error(live, conveyor):
    assert conveyor("deploy", str(live.app_dir(kind="job", name="refresh")))[0] == 0
    for command, name in (
        (("runs", "refresh", "--env", "dev", "--log", "99999999999"), "run_id"),
        (("runs", "refresh", "--env", "dev", "--limit", "-1"), "limit"),
        (("logs", "refresh", "--env", "dev", "--release", "99999999999"), "release"),
        (("rollback", "refresh", "--env", "dev", "--to", "99999999999"), "to_release"),
    ):
        code, out, err = conveyor(*command)
        assert code == 1, (command, out, err)
        assert "the request is not valid: " in err and name in err, err
        assert "HTTP 500" not in err


def test_a_server_that_is_down_is_named_without_a_traceback(live, conveyor, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("CONVEYOR_SERVER", closed)
    for command in (
        ("status",),
        ("deploy", str(live.app_dir())),
        ("whoami",),
        ("gc", "--dry-run"),
    ):
        code, out, err = conveyor(*command)
        assert code == 1, command
        assert f"could not reach the Conveyor server at {closed}" in err
        assert "Traceback" not in err and out == ""


class _NotConveyor(http.server.BaseHTTPRequestHandler):
    """A web server that is not Conveyor: a sign-in page for every request."""

    def do_GET(self) -> None:
        body = b"<html><body>Please sign in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_is_not_conveyor_is_named_without_a_traceback(conveyor, monkeypatch):
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotConveyor)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{other.server_address[1]}"
        monkeypatch.setenv("CONVEYOR_SERVER", address)
        monkeypatch.setenv("CONVEYOR_TOKEN", "cvt_anything")
        code, out, err = conveyor("status")
    finally:
        other.shutdown()
        other.server_close()
        thread.join(10)
    assert code == 1, (out, err)
    assert f"the server at {address} did not answer as a Conveyor server" in err
    assert "Traceback" not in err and out == ""
