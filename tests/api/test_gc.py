"""`POST /gc` is an admin's: everyone else is refused with the error shape, before anything is
planned or removed; bad input is a clear error. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from conveyor.domain.retention import RetentionSettings
from conveyor.services.retention import Retention

V1 = "/api/v1"


def test_only_admins_may_collect_garbage(api, admin):
    api.context.retention = Retention(api.services, api.tmp / "home", RetentionSettings())
    bundle = api.bundle(by="root")
    deployed = api.client.post(
        f"{V1}/apps/hello/environments/dev/deploys", json={"bundle": bundle}, headers=admin
    )
    api.wait(deployed.json(), admin)
    for roles in (("dev:developer",), ("dev:deployer", "prod:approver", "test:viewer")):
        user = api.as_user(f"user{len(roles)}", *roles)
        for body in ({"dry_run": True}, {"dry_run": False}):
            refused = api.client.post(f"{V1}/gc", json=body, headers=user)
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "forbidden"
            assert error["message"].endswith("may not do this: it needs an admin")
    anonymous = api.client.post(f"{V1}/gc", json={"dry_run": True})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    with api.services.store.transaction() as connection:
        from conveyor.storage import audit

        assert not [e for e in audit.events(connection) if e.action == "server.gc"]

    bad = api.client.post(f"{V1}/gc", json={"dry_run": "perhaps"}, headers=admin)
    assert bad.status_code in (400, 422) and "dry_run" in bad.json()["error"]["message"]
    done = api.client.post(f"{V1}/gc", json={"dry_run": True}, headers=admin)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["dry_run"] is True and answer["freed_bytes"] == 0
    assert set(answer["groups"]) == {
        "releases",
        "runtimes",
        "bundles",
        "logs",
        "run outputs",
        "bytecode",
    }
    assert answer["summary"] == "gc: nothing to remove"
