"""What the API fuzzer (tests/e2e/test_api_fuzz.py) found, kept as regressions: every integer and
string the API accepts is bounded, so a huge, negative or endless value is a 4xx in the one error
shape, never a 500; a body that is not even text is an invalid input; and the OpenAPI document
declares every error answer (in that shape) and every content type the API sends. Runs on SQLite
and on PostgreSQL."""

from __future__ import annotations

import pytest

from conveyor.api.limits import MAX_ID

V1 = "/api/v1"
HUGE = 10**27


def refused(answer, status: int = 422) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return str(error["code"])


@pytest.mark.parametrize(
    "path",
    [
        f"/audit?limit={HUGE}",
        "/audit?limit=-1",
        f"/audit/export?since={HUGE}",
        f"/operations/1/log?after={HUGE}",
        f"/operations/{HUGE}",
        f"/operations/{HUGE}/log",
        f"/releases/{HUGE}",
        f"/releases/{MAX_ID + 1}",
        f"/apps/hello/releases?limit={HUGE}",
        "/apps/hello/releases?limit=-1",
        f"/apps/hello/environments/dev/logs?after={HUGE}",
        f"/apps/hello/environments/dev/logs?release={HUGE}",
        f"/apps/hello/environments/dev/runs?limit={HUGE}",
        f"/apps/hello/environments/dev/runs/{HUGE}",
        f"/apps/hello/environments/dev/runs/1?after={HUGE}",
    ],
)
def test_huge_and_negative_numbers_are_refused_with_the_error_shape(api, admin, path):
    if path.startswith("/operations/1/"):  # an operation that exists: its log is read
        deployed = api.client.post(
            f"{V1}/apps/hello/environments/dev/deploys",
            json={"bundle": api.bundle()},
            headers=admin,
        )
        api.wait(deployed.json(), admin)
    assert refused(api.client.get(V1 + path, headers=admin)) == "invalid_input"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", f"/tokens/{HUGE}", None),
        ("POST", "/tokens", {"expires_days": HUGE}),
        ("POST", "/apps/hello/environments/dev/rollbacks", {"to_release": HUGE}),
        ("PUT", "/environments/dev/policy", {"direct_deploys": True, "approvals": HUGE}),
    ],
)
def test_huge_numbers_in_bodies_and_paths_that_change_things(api, admin, method, path, body):
    answer = api.client.request(method, V1 + path, json=body, headers=admin)
    assert refused(answer) == "invalid_input"


LONG = "x" * 2_000_000


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/status?app={LONG[:5000]}", None),
        ("GET", f"/apps/{LONG[:5000]}/access", None),
        ("PUT", "/apps/hello/environments/dev/variables/GREETING", {"value": LONG}),
        ("POST", "/users", {"name": LONG}),
        ("POST", "/users", {"name": "ana", "roles": ["dev:viewer"] * 10_000}),
        ("PUT", "/users/root/groups", {"groups": [LONG[:5000]]}),
        ("POST", "/apps/hello/environments/dev/approvals", {"comment": LONG}),
        ("PUT", "/apps/hello/environments/dev/schedule", {"cron": LONG}),
        ("PUT", "/apps/hello/environments/dev/email", {"to": ["a@example.com"] * 10_000}),
        ("PUT", "/apps/hello/environments/dev/access", {"access": LONG}),
    ],
)
def test_endless_strings_and_lists_are_refused(api, admin, method, path, body):
    answer = api.client.request(method, V1 + path, json=body, headers=admin)
    assert refused(answer) == "invalid_input"


def test_a_body_that_is_not_text_is_an_invalid_input(api, admin):
    answer = api.client.put(
        f"{V1}/users/root/groups",
        content=b"\xf02",
        headers={**admin, "Content-Type": "application/json"},
    )
    code = refused(answer)
    assert code == "invalid_input" and "JSON" in answer.json()["error"]["message"]


def test_the_openapi_document_declares_every_error_in_the_one_shape(api):
    spec = api.client.get(f"{V1}/openapi.json").json()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]
    shape = spec["components"]["schemas"][detail]
    assert set(shape["properties"]) == set(shape["required"]) == {"code", "message"}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if operation["x-permission"]["permission"] == "public":
                continue
            for status in ("401", "403", "404", "409", "422"):
                declared = operation["responses"].get(status)
                assert declared, f"{method.upper()} {path} does not declare {status}"
                schema = declared["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_audit_export_declares_json_lines(api):
    spec = api.client.get(f"{V1}/openapi.json").json()
    content = spec["paths"][f"{V1}/audit/export"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["application/x-ndjson"]


def test_a_schedule_that_never_comes_due_is_an_invalid_input(api, admin):
    """30 February passes croniter's syntax check, but has no slot to start from."""
    api.bundle()  # the app exists; nothing is live: a schedule set ahead of its release
    answer = api.client.put(
        f"{V1}/apps/hello/environments/dev/schedule", json={"cron": "0 6 30 2 *"}, headers=admin
    )
    assert refused(answer) == "invalid_input"
    assert "never comes due" in answer.json()["error"]["message"]
