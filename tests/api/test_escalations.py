"""What a hostile colleague tried with the API before users and roles existed, each refused now.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from conveyor.storage import schema, tokens

V1 = "/api/v1"


def deploy(api, headers, bundle: str, environment: str) -> object:
    answer = api.client.post(
        f"{V1}/apps/hello/environments/{environment}/deploys",
        json={"bundle": bundle},
        headers=headers,
    )
    assert answer.status_code == 202, answer.text
    return api.wait(answer.json(), headers)


def test_a_user_cannot_mint_a_token_for_another_name(api, admin):
    ana = api.as_user("ana", "dev:developer")
    api.as_user("bob", "prod:approver")
    refused = api.client.post(f"{V1}/users/bob/tokens", json={}, headers=ana)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "ana may only do this for themselves: for another user it needs an admin"
    )
    # Naming someone else in the body of the own-token route changes nothing: it is ana's.
    own = api.client.post(f"{V1}/tokens", json={"owner": "bob", "user": "bob"}, headers=ana)
    assert own.status_code == 201 and own.json()["user"] == "ana"
    me = api.client.get(f"{V1}/me", headers={"Authorization": f"Bearer {own.json()['token']}"})
    assert me.json()["name"] == "ana"
    # An admin may make one for bob.
    made = api.client.post(f"{V1}/users/bob/tokens", json={}, headers=admin)
    assert made.status_code == 201 and made.json()["user"] == "bob"


def test_one_person_cannot_approve_their_own_bundle_as_a_second_person(api, admin):
    """The old attack: mint a token for a made-up name and approve with it. Tokens act as
    users, only admins add users, and only approvers' approvals count."""
    api.client.put(
        f"{V1}/environments/prod/policy",
        json={
            "direct_deploys": False,
            "promotes_from": "test",
            "approvals": 1,
            "approver_not_deployer": True,
        },
        headers=admin,
    )
    ana = api.as_user("ana", "test:developer", "prod:deployer", "prod:approver")
    bundle = api.bundle(by="ana")
    assert deploy(api, ana, bundle, "test")["state"] == "succeeded"
    assert api.client.post(f"{V1}/users/ana2/tokens", json={}, headers=ana).status_code == 403
    assert (
        api.client.post(f"{V1}/users", json={"name": "ana2", "roles": []}, headers=ana).status_code
        == 403
    )
    approved = api.client.post(f"{V1}/apps/hello/environments/prod/approvals", json={}, headers=ana)
    assert approved.status_code == 201  # she is an approver, but she deployed it:
    refused = api.client.post(f"{V1}/apps/hello/promotions", json={}, headers=ana)
    assert refused.status_code == 403
    assert "approvals by ana, who deployed it, do not count" in refused.json()["error"]["message"]


def test_only_an_admin_loosens_prods_policy(api, admin):
    deployer = api.as_user("dan", "prod:deployer", "prod:approver")
    loosened = {"direct_deploys": True, "promotes_from": None, "approvals": 0}
    refused = api.client.put(f"{V1}/environments/prod/policy", json=loosened, headers=deployer)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "forbidden",
        "message": "dan may not do this: it needs an admin",
    }
    policy = {
        e["name"]: e["policy"] for e in api.client.get(f"{V1}/environments", headers=admin).json()
    }
    assert policy["prod"]["direct_deploys"] is False
    applied = api.client.post(
        f"{V1}/environments/apply",
        json={"environments": [], "expected": None},
        headers=deployer,
    )
    assert applied.status_code == 403


def test_nobody_applies_environments_while_the_servers_own_file_is_in_charge(api, admin):
    api.context.environments_file = "/etc/conveyor/environments.yml"
    state = api.client.get(f"{V1}/environments/state", headers=admin).json()
    assert state["managed_by"] == "/etc/conveyor/environments.yml"
    refused = api.client.post(
        f"{V1}/environments/apply",
        json={"environments": state["environments"], "expected": state["fingerprint"]},
        headers=admin,
    )
    assert refused.status_code == 403
    assert "managed by the server's own file /etc/conveyor/environments.yml" in refused.text
    policy = api.client.put(
        f"{V1}/environments/test/policy", json={"direct_deploys": False}, headers=admin
    )
    assert policy.status_code == 403 and "/etc/conveyor/environments.yml" in policy.text


def test_an_apply_is_audited_with_the_user_and_the_digest_of_what_was_applied(api, admin):
    state = api.client.get(f"{V1}/environments/state", headers=admin).json()
    desired = state["environments"]
    desired[1]["policy"]["approvals"] = 1
    applied = api.client.post(
        f"{V1}/environments/apply",
        json={"environments": desired, "expected": state["fingerprint"], "source": "lies.yml"},
        headers=admin,
    )
    assert applied.status_code == 200, applied.text
    after = api.client.get(f"{V1}/environments/state", headers=admin).json()
    [event] = [
        e
        for e in api.client.get(f"{V1}/audit", headers=admin).json()
        if e["action"] == "environments.apply"
    ]
    assert event["actor"] == "root" and event["subject"] == "environments"
    assert event["details"]["digest"] == after["fingerprint"]
    assert event["details"]["file"] == "lies.yml"  # what the client said, kept as its label


def test_prods_variables_and_rollback_need_a_role_in_prod(api, admin):
    developer = api.as_user("dev-only", "dev:developer")
    bundle = api.bundle()
    assert deploy(api, developer, bundle, "dev")["state"] == "succeeded"
    put = api.client.put(
        f"{V1}/apps/hello/environments/prod/variables/API_URL",
        json={"value": "http://evil.example"},
        headers=developer,
    )
    assert put.status_code == 403
    assert put.json()["error"]["message"] == (
        "dev-only may not set variables in prod: that needs the developer or deployer role in "
        "prod (dev-only has no role there); an admin can grant it with "
        "`conveyor users grant dev-only prod:developer`"
    )
    rollback = api.client.post(
        f"{V1}/apps/hello/environments/prod/rollbacks", json={}, headers=developer
    )
    assert rollback.status_code == 403 and "roll back in prod" in rollback.text
    deploy_prod = api.client.post(
        f"{V1}/apps/hello/environments/prod/deploys", json={"bundle": bundle}, headers=developer
    )
    assert deploy_prod.status_code == 403
    # In dev, where they are a developer, they may.
    ok = api.client.put(
        f"{V1}/apps/hello/environments/dev/variables/API_URL",
        json={"value": "http://dev.example"},
        headers=developer,
    )
    assert ok.status_code == 200


def test_a_viewer_sees_but_changes_nothing(api, admin):
    viewer = api.as_user("vic", "dev:viewer")
    deploy(api, admin, api.bundle(), "dev")
    assert api.client.get(f"{V1}/apps/hello/environments/dev/variables", headers=viewer).is_success
    assert api.client.get(f"{V1}/apps/hello/releases", headers=viewer).is_success
    for method, path in (
        ("PUT", "/apps/hello/environments/dev/variables/X"),
        ("POST", "/apps/hello/environments/dev/deploys"),
        ("POST", "/apps/hello/environments/dev/rollbacks"),
        ("POST", "/bundles"),
    ):
        answer = api.client.request(method, V1 + path, json={"value": "1"}, headers=viewer)
        assert answer.status_code == 403, (method, path, answer.text)


def test_environments_one_has_no_role_in_stay_out_of_sight(api, admin):
    bundle = api.bundle()
    for environment in ("dev", "test"):
        deploy(api, admin, bundle, environment)
    devs = api.as_user("devs", "dev:developer")
    cells = api.client.get(f"{V1}/status", headers=devs).json()["cells"]
    assert [c["environment"] for c in cells] == ["dev"]
    history = api.client.get(f"{V1}/apps/hello/releases", headers=devs).json()
    assert {r["environment"] for r in history} == {"dev"}
    test_release = next(
        r["id"]
        for r in api.client.get(f"{V1}/apps/hello/releases", headers=admin).json()
        if r["environment"] == "test"
    )
    for path in (
        f"/releases/{test_release}",
        "/apps/hello/environments/test/logs",
        "/apps/hello/environments/test/variables",
        "/apps/hello/releases?environment=test",
        "/apps/hello/diff?left=dev&right=test",
    ):
        answer = api.client.get(V1 + path, headers=devs)
        assert answer.status_code == 403, path
        assert "devs may not see test: that needs a role in test" in answer.text


def test_tokens_are_listed_revoked_and_expire(api, admin):
    ana = api.as_user("ana", "dev:developer")
    own = api.client.post(f"{V1}/tokens", json={"expires_days": 7}, headers=ana).json()
    mine = {"Authorization": f"Bearer {own['token']}"}
    listed = api.client.get(f"{V1}/tokens", headers=mine).json()
    assert {t["user"] for t in listed} == {"ana"} and len(listed) == 2
    assert all("token" not in t and own["token"] not in str(t) for t in listed)
    assert {"id", "user", "created", "expires", "last_used"} <= set(listed[0])
    assert len(api.client.get(f"{V1}/tokens", headers=admin).json()) == 3  # an admin sees all

    # ana cannot revoke root's token: to her it does not exist.
    roots = next(t["id"] for t in api.client.get(f"{V1}/tokens", headers=admin).json())
    assert api.client.delete(f"{V1}/tokens/{roots}", headers=mine).status_code == 404
    assert api.client.delete(f"{V1}/tokens/{own['id']}", headers=ana).status_code == 200
    gone = api.client.get(f"{V1}/me", headers=mine)
    assert gone.status_code == 401 and "was revoked" in gone.json()["error"]["message"]

    # An expired token stops working (one made by the server a minute before its expiry).
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="microseconds")
    with api.services.store.transaction() as connection:
        _, old = tokens.create_token(connection, "ana", by="ana", expires_at=past)
    expired = api.client.get(f"{V1}/me", headers={"Authorization": f"Bearer {old}"})
    assert expired.status_code == 401 and "expired on" in expired.json()["error"]["message"]
    assert (
        api.client.post(f"{V1}/tokens", json={"expires_days": 99999}, headers=ana).status_code
        == 422
    )
    forever = api.client.post(f"{V1}/tokens", json={"expires_days": 0}, headers=ana)
    assert forever.status_code == 403 and "never expires: that needs an admin" in forever.text
    assert api.client.post(f"{V1}/tokens", json={"expires_days": 0}, headers=admin).is_success


def test_a_disabled_users_tokens_stop_working_at_once(api, admin):
    bob = api.as_user("bob", "dev:developer")
    assert api.client.get(f"{V1}/me", headers=bob).status_code == 200
    assert api.client.post(f"{V1}/users/bob/disable", headers=admin).status_code == 200
    refused = api.client.get(f"{V1}/me", headers=bob)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "user bob is disabled; their tokens no longer work"


def test_user_names_the_server_acts_under_are_refused(api, admin):
    for name in ("server", "upgrade", "git:test", "-x"):
        answer = api.client.post(f"{V1}/users", json={"name": name}, headers=admin)
        assert answer.status_code == 422, name


def test_the_last_admin_cannot_be_disabled_or_demoted(api, admin):
    assert api.client.post(f"{V1}/users/root/disable", headers=admin).status_code == 409
    demoted = api.client.delete(f"{V1}/users/root/roles/admin", headers=admin)
    assert demoted.status_code == 409 and "the only active admin" in demoted.text


def test_diff_tells_only_admins_whether_secrets_are_equal(api, admin):
    bundle = api.bundle()
    deploy(api, admin, bundle, "dev")
    deploy(api, admin, bundle, "test")
    both = api.as_user("both", "dev:developer", "test:viewer")
    for environment in ("dev", "test"):
        api.client.put(
            f"{V1}/apps/hello/environments/{environment}/variables/TOKEN",
            json={"value": "same-value", "secret": True},
            headers=admin,
        )

    def token_row(headers):
        answer = api.client.get(
            f"{V1}/apps/hello/diff", params={"left": "dev", "right": "test"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        return next(d for d in answer.json() if d["aspect"] == "variable TOKEN")

    assert token_row(both)["same"] is None and "same-value" not in str(token_row(both))
    assert token_row(admin)["same"] is True and "same-value" not in str(token_row(admin))


def test_variable_names_that_change_the_code_are_refused(api, admin):
    deploy(api, admin, api.bundle(), "dev")
    for name in ("PYTHONPATH", "LD_PRELOAD", "CONVEYOR_ENV", "PATH"):
        answer = api.client.put(
            f"{V1}/apps/hello/environments/prod/variables/{name}",
            json={"value": "/tmp/evil"},
            headers=admin,
        )
        assert answer.status_code == 422, name
        assert name in answer.json()["error"]["message"]


def test_uploads_need_the_developer_role_somewhere(api, admin):
    approver = api.as_user("amy", "prod:approver")
    answer = api.client.post(f"{V1}/bundles", content=b"not a bundle", headers=approver)
    assert answer.status_code == 403
    assert "amy may not upload bundles" in answer.json()["error"]["message"]


def test_a_promotion_needs_the_deployer_role_where_it_lands(api, admin):
    tester = api.as_user("tess", "dev:developer", "test:deployer")
    bundle = api.bundle()
    deploy(api, admin, bundle, "dev")
    promoted = api.client.post(f"{V1}/apps/hello/promotions", json={}, headers=tester)
    assert promoted.status_code == 202  # into test, the next environment
    api.wait(promoted.json(), tester)
    # Now the next environment with something new is prod, where tess has no role.
    refused = api.client.post(f"{V1}/apps/hello/promotions", json={}, headers=tester)
    assert refused.status_code == 403
    assert "tess may not promote into prod: that needs the deployer role" in refused.text


def test_a_token_row_written_into_the_database_is_no_token(api, admin):
    """Someone who can write the database adds a row for a token of their own making, and
    gives their own token's row to the admin: neither works."""
    import hashlib

    from sqlalchemy import insert, select

    forged = "cvt_forged-by-hand"
    with api.services.store.transaction() as connection:
        connection.execute(
            insert(schema.api_tokens).values(
                digest=hashlib.sha256(forged.encode()).hexdigest(),
                owner="root",
                created_at="2026-11-30T00:00:00+00:00",
                created_by="root",
            )
        )
    refused = api.client.get(f"{V1}/me", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401 and "not valid for this server" in refused.text

    mallory = api.as_user("mallory", "dev:viewer")
    with api.services.store.transaction() as connection:
        own = connection.execute(
            select(schema.api_tokens.c.id).where(schema.api_tokens.c.owner == "mallory")
        ).scalar_one()
        connection.execute(
            update(schema.api_tokens).where(schema.api_tokens.c.id == own).values(owner="root")
        )
    refused = api.client.get(f"{V1}/me", headers=mallory)
    assert refused.status_code == 401
    assert "was changed in the database outside Conveyor" in refused.json()["error"]["message"]


def test_a_token_cannot_make_a_token_that_outlives_it(api, admin):
    """A leaked CI token mints itself a ten-year token; revoking the leaked one must still cut
    everything off, so the child expires with its parent."""
    api.as_user("ci", "test:developer")
    parent = api.client.post(f"{V1}/users/ci/tokens", json={"expires_days": 7}, headers=admin)
    leaked = {"Authorization": f"Bearer {parent.json()['token']}"}
    child = api.client.post(f"{V1}/tokens", json={"expires_days": 3650}, headers=leaked).json()
    assert child["expires"] <= parent.json()["expires"]


def test_apply_checks_definitions_on_the_server(api, admin):
    state = api.client.get(f"{V1}/environments/state", headers=admin).json()
    for change, reason in (
        ({"variables": {"LD_PRELOAD": "/tmp/x.so"}}, "LD_PRELOAD changes which code"),
        ({"secrets": {"DB_PASSWORD": "hunter2"}}, "must be a reference like ${DB_PASSWORD}"),
        (
            {"data": [{"name": "w", "url": "postgresql://u:hunter2@db/w", "mode": "read-only"}]},
            "the url holds a password",
        ),
    ):
        desired = [dict(e) for e in state["environments"]]
        desired[2] = {**desired[2], **change}
        answer = api.client.post(
            f"{V1}/environments/apply",
            json={"environments": desired, "expected": state["fingerprint"]},
            headers=admin,
        )
        assert answer.status_code == 422, change
        assert reason in answer.json()["error"]["message"]
        assert "hunter2" not in answer.text


def test_environment_definitions_are_for_admins(api, admin):
    viewer = api.as_user("vic", "dev:viewer")
    assert api.client.get(f"{V1}/environments/state", headers=viewer).status_code == 403
    assert api.client.get(f"{V1}/apps/hello/bundles/abcdef", headers=viewer).status_code == 403


def test_server_settings_that_load_other_code_are_refused(api, admin):
    deploy(api, admin, api.bundle(), "dev")
    for name in ("UVICORN_APP_DIR", "GUNICORN_CMD_ARGS", "JUPYTER_CONFIG_DIR", "MPLBACKEND"):
        answer = api.client.put(
            f"{V1}/apps/hello/environments/prod/variables/{name}",
            json={"value": "/elsewhere"},
            headers=admin,
        )
        assert answer.status_code == 422, name
