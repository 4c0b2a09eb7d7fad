"""Every route declares its permission, it is checked before the body is read, and refusals
have one shape: 401 for who you are, 403 for what you may do (naming the role)."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from conveyor.api.app import ApiContext, create_app
from conveyor.api.permissions import AuthorizedRoute, need_of

V1 = "/api/v1"


def test_every_route_declares_a_permission(api):
    contexts = list(iter_route_contexts(api.app.routes))
    handlers = [c for c in contexts if isinstance(c.original_route, APIRoute)]
    assert len(handlers) > 30
    missing = [c.path for c in handlers if not isinstance(c.original_route, AuthorizedRoute)]
    assert not missing, f"routes without a declared permission: {missing}"
    for context in handlers:
        need_of(context.original_route)  # raises for a route that declares nothing
    others = {
        c.path
        for c in contexts
        if isinstance(c.original_route, Route) and not isinstance(c.original_route, APIRoute)
    }
    assert others == {f"{V1}/openapi.json", f"{V1}/docs", "/docs/oauth2-redirect"}


def test_a_route_without_a_permission_cannot_be_built():
    import pytest
    from fastapi import APIRouter

    router = APIRouter(route_class=AuthorizedRoute)
    with pytest.raises(TypeError, match="declares no permission"):

        @router.get("/anything")
        def anything() -> None:  # pragma: no cover - never registered
            pass


def test_the_openapi_document_names_each_permission(api):
    spec = api.client.get(f"{V1}/openapi.json").json()
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert operations and all("x-permission" in op for op in operations)


def test_the_token_is_checked_before_the_body_is_read(api, admin):
    """A body that is not even JSON: without a valid token the answer is 401, with a token
    but without the role 403, never 422 (which would mean the body was looked at)."""
    path = f"{V1}/apps/hello/environments/prod/deploys"
    garbage = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    assert api.client.post(path, **garbage).status_code == 401
    viewer = api.as_user("vic", "prod:viewer")
    answer = api.client.post(
        path, content=garbage["content"], headers={**viewer, **garbage["headers"]}
    )
    assert answer.status_code == 403
    answer = api.client.post(
        path, content=garbage["content"], headers={**admin, **garbage["headers"]}
    )
    assert answer.status_code == 422  # an admin may: now the body is read, and refused


def test_missing_and_wrong_tokens_get_401_with_the_reason(api):
    for headers, reason in (
        ({}, "this request has no token"),
        ({"Authorization": "Basic abc"}, "this request has no token"),
        ({"Authorization": "Bearer cvt_not-a-token"}, "the token is not valid for this server"),
    ):
        answer = api.client.get(f"{V1}/status", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["error"]["code"] == "unauthorized"
        assert reason in answer.json()["error"]["message"]
    assert api.client.get(f"{V1}/health").status_code == 200


def test_an_unknown_environment_is_named_not_refused(api, admin):
    answer = api.client.get(f"{V1}/apps/hello/environments/prd/variables", headers=admin)
    assert answer.status_code == 404
    assert "there is no environment 'prd' (environments: dev, test, prod)" in answer.text


def test_the_permission_table_in_the_docs_is_generated_from_the_routes(store):
    from pathlib import Path

    from conveyor.api.background import Background
    from conveyor.api.permission_table import render
    from conveyor.runtime.memory import MemoryRuntime
    from conveyor.services.context import Services

    app = create_app(ApiContext(Services(store, MemoryRuntime()), Background()))
    security = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    table = render(app)
    assert table in security, "docs/security.md's permission table is stale: run `make docs`"
