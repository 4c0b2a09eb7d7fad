"""`POST /repairs` is an operation like a deploy: it answers at once (202) with the operation
the client follows. An operation over every environment is followed by those who may view all
of them. Runs on SQLite and on PostgreSQL, with the in-memory runtime."""

from __future__ import annotations

V1 = "/api/v1"


def test_a_repair_is_an_operation_followed_like_a_deploy(api, admin):
    started = api.client.post(f"{V1}/repairs", headers=admin)
    assert started.status_code == 202, started.text
    operation = started.json()["operation"]
    assert (operation["kind"], operation["app"], operation["environment"]) == ("repair", "*", "*")
    finished = api.wait(started.json(), admin)
    assert finished["state"] == "succeeded"
    assert finished["result"] == "nothing has drifted; nothing to repair"

    # Viewing it needs a role in every environment it spans (admins have them all).
    viewer = api.as_user("vera", "dev:viewer", "test:viewer")
    refused = api.client.get(f"{V1}/operations/{operation['id']}", headers=viewer)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "in prod" in refused.json()["error"]["message"]
    everywhere = api.as_user("walt", "dev:viewer", "test:viewer", "prod:viewer")
    assert api.client.get(f"{V1}/operations/{operation['id']}", headers=everywhere).is_success

    one = api.client.post(f"{V1}/repairs", params={"environment": "test"}, headers=admin)
    assert one.status_code == 202 and one.json()["operation"]["environment"] == "test"
    api.wait(one.json(), admin)
    missing = api.client.post(f"{V1}/repairs", params={"environment": "qa"}, headers=admin)
    assert missing.status_code == 404 and "there is no environment 'qa'" in missing.text
    refused = api.client.post(f"{V1}/repairs", headers=api.as_user("dev", "dev:deployer"))
    assert refused.status_code == 403
