"""Who may say who is mailed about runs: the `run` permission in that environment only. A
viewer, or a developer in dev reaching for prod's readers, is refused with the error shape and
nothing changes. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

V1 = "/api/v1"


def test_only_those_who_may_run_there_set_its_recipients(api, admin):
    bundle = api.bundle(by="root")
    deployed = api.client.post(
        f"{V1}/apps/hello/environments/dev/deploys", json={"bundle": bundle}, headers=admin
    )
    api.wait(deployed.json(), admin)
    body = {"to": ["mallory@example.com"], "on": "always"}
    developer = api.as_user("dave", "dev:developer", "prod:viewer")
    for environment in ("prod", "test"):
        for method in ("put", "delete"):
            refused = api.client.request(
                method.upper(),
                f"{V1}/apps/hello/environments/{environment}/email",
                json=body if method == "put" else None,
                headers=developer,
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"
    shown = api.client.get(f"{V1}/apps/hello/email", headers=admin)
    assert shown.status_code == 200
    assert "mallory@example.com" not in shown.text
    anonymous = api.client.put(f"{V1}/apps/hello/environments/dev/email", json=body)
    assert anonymous.status_code == 401
