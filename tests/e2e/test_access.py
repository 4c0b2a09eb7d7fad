"""Users, roles, tokens, the audit chain and the secrets key through the real CLI against a
real server: the shapes a script uses, and the exit codes of refusals."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .server import make_app

pytestmark = pytest.mark.e2e


def test_users_roles_and_tokens_from_the_cli(server, tmp_path):
    added = server.cli_json("users", "add", "bob", "--role", "test:deployer", "--json")
    assert added == {
        "name": "bob",
        "admin": False,
        "disabled": False,
        "roles": ["test:deployer"],
        "groups": [],
        "password": False,  # no console password until one is set
    }
    defaults = server.cli_json("users", "add", "carol", "--json")
    assert defaults["roles"] == ["dev:developer", "prod:viewer", "test:viewer"]
    assert server.cli("users", "grant", "bob", "prod:approver").code == 0
    assert server.cli("users", "revoke", "bob", "test:deployer").code == 0
    listed = {u["name"]: u for u in server.cli_json("users", "list")}
    assert listed["bob"]["roles"] == ["prod:approver"]
    table = server.cli("users", "list")
    assert "bob" in table.out and "prod:approver" in table.out

    made = server.cli_json("token", "create", "--user", "bob", "--expires", "30")
    bob = made["token"]
    assert set(made) >= {"id", "token", "user", "expires"} and made["user"] == "bob"
    whoami = server.cli("whoami", token=bob)
    assert whoami.code == 0 and "bob: prod:approver" in whoami.out

    # bob is not an admin: another user's token, users, audit, policies are refused (exit 4).
    for args in (
        ("token", "create", "--user", "carol"),
        ("users", "list"),
        ("users", "add", "mallory", "--admin"),
        ("audit",),
        ("secrets", "rotate-key"),
    ):
        refused = server.cli(*args, token=bob)
        assert refused.code == 4, (args, refused)
        assert "Traceback" not in refused.err
    deploy = server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "prod", token=bob)
    assert deploy.code == 4 and "bob may not upload bundles" in deploy.err

    # bob's own tokens: listed without the token, revoked, then refused (401, exit 4); the
    # admin sees everyone's.
    mine = json.loads(server.cli("token", "list", "--json", token=bob).out)
    assert [t["user"] for t in mine] == ["bob"] and bob not in json.dumps(mine)
    assert {"id", "user", "created", "expires", "last_used"} <= set(mine[0])
    everyone = server.cli_json("token", "list")
    assert {t["user"] for t in everyone} >= {"bob", server.cli_json("whoami")["name"]}
    revoked = server.cli("token", "revoke", str(made["id"]), token=bob)
    assert revoked.code == 0, revoked
    gone = server.cli("status", token=bob)
    assert gone.code == 4 and "was revoked" in gone.err

    # A disabled user's tokens stop working.
    carol = server.cli_json("token", "create", "--user", "carol")["token"]
    assert server.cli("status", token=carol).code == 0
    assert server.cli("users", "disable", "carol").code == 0
    assert server.cli("status", token=carol).code == 4


def test_audit_export_and_verify_see_through_a_rewritten_database(server, tmp_path):
    assert server.cli("deploy", str(make_app(tmp_path, "v1"))).code == 0
    exported = server.cli("audit", "export")
    assert exported.code == 0, exported
    events = [json.loads(line) for line in exported.out.splitlines()]
    assert events[0]["seq"] == 1 and all(len(e["mac"]) == 64 and e["keyed"] for e in events)
    later = server.cli("audit", "export", "--since", str(events[-2]["seq"]))
    assert [json.loads(line)["seq"] for line in later.out.splitlines()] == [events[-1]["seq"]]
    assert "MAC chain verified" in server.cli("audit", "verify").out

    # Someone with only the database rewrites who did the deploy.
    with sqlite3.connect(server.home / "conveyor.db") as db:
        db.execute("UPDATE audit_events SET actor = 'eve' WHERE action = 'release.deploy'")
    broken = server.cli("audit", "verify")
    assert broken.code == 1
    assert "was edited: its content does not match its MAC" in broken.err


def test_secrets_are_encrypted_at_rest_and_the_key_rotates(server, tmp_path):
    assert server.cli("deploy", str(make_app(tmp_path, "v1"))).code == 0
    set_secret = server.cli(
        "vars", "set", "hello", "GREETING=s3cret-hi", "--secret", "--env", "dev"
    )
    assert set_secret.code == 0
    stored = (server.home / "conveyor.db").read_bytes()
    for suffix in ("-wal", "-shm"):
        if (server.home / f"conveyor.db{suffix}").exists():
            stored += (server.home / f"conveyor.db{suffix}").read_bytes()
    assert b"s3cret-hi" not in stored
    rotated = server.cli("secrets", "rotate-key")
    assert rotated.code == 0 and "now encrypted with key k2" in rotated.out, rotated
    assert server.cli("deploy", str(make_app(tmp_path, "v2"))).code == 0
    assert server.get("dev", "hello") == (200, "v2 s3cret-hi")  # the app still gets it
    # Restarted, the server reads the rotated keys file.
    server.stop()
    server.start()
    assert server.get("dev", "hello") == (200, "v2 s3cret-hi")
