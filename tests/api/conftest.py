"""The control API in process: the real FastAPI app over a real store (SQLite and PostgreSQL)
and the in-memory runtime, reached through FastAPI's TestClient (httpx, no sockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conveyor.api.app import ApiContext, create_app
from conveyor.api.background import Background
from conveyor.bundles.build import build_bundle
from conveyor.domain.access import parse_grant
from conveyor.services import tokens, users
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    services: Services
    context: ApiContext
    tmp: Path

    def as_user(self, name: str, *roles: str, admin: bool = False) -> dict[str, str]:
        """Add the user (with ``ENV:ROLE`` roles) and return headers carrying a token of
        theirs."""
        grants = [parse_grant(r) for r in roles]
        users.add_user(self.services, name, grants, admin=admin, actor="setup")
        return self.headers_of(name)

    def headers_of(self, name: str) -> dict[str, str]:
        user = users.get_user(self.services, name)
        _, token = tokens.create_token(self.services, user, None, None)
        return {"Authorization": f"Bearer {token}"}

    def bundle(self, version: str = "1", *, by: str = "setup") -> str:
        root = self.tmp / f"src-{version}-{by}"
        root.mkdir()
        (root / "conveyor.yml").write_text("name: hello\ntype: fastapi\n")
        (root / "app.py").write_text(f"VERSION = {version!r}\napp = None\n")
        built = build_bundle(root, root / "bundle.tar.gz")
        return register_bundle(self.services, built.archive, built.provenance, by).bundle_id

    def wait(self, answer: object, headers: dict[str, str]) -> dict[str, object]:
        """Follow a started operation to its end."""
        operation = answer["operation"]  # type: ignore[index]
        while True:
            page = self.client.get(
                f"/api/v1/operations/{operation['id']}/log",
                params={"wait": 5},
                headers=headers,
            ).json()
            if page["operation"]["state"] != "running":
                return page["operation"]


@pytest.fixture
def api(store, tmp_path: Path) -> Iterator[Api]:
    from conveyor.runtime.memory import MemoryRuntime

    services = Services(store, MemoryRuntime())
    context = ApiContext(services, Background())
    app = create_app(context)
    with TestClient(app) as client:
        yield Api(client, app, services, context, tmp_path)
    context.background.close(10)


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    return api.as_user("root", admin=True)


Call = Callable[..., object]
