"""The console in process: the real app (API and console) over a real store and the in-memory
runtime, through Starlette's TestClient, signing in the way a browser does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.api.app import ApiContext, create_app
from conveyor.api.background import Background
from conveyor.bundles.build import build_bundle
from conveyor.domain.access import parse_grant
from conveyor.runtime.memory import MemoryRuntime
from conveyor.services import sign_in, users
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services

BASE = "http://127.0.0.1:8700"
ORIGIN = {"Origin": BASE}
PASSWORD = "correct horse battery"


@dataclass
class Console:
    services: Services
    context: ApiContext
    tmp: Path

    def browser(self) -> TestClient:
        client = TestClient(create_app(self.context), base_url=BASE)
        self._clients.append(client)
        return client

    def user(self, name: str, *roles: str, admin: bool = False) -> TestClient:
        """Add a user with a password and return a browser signed in as them."""
        added = users.add_user(
            self.services, name, [parse_grant(r) for r in roles], admin=admin, actor="setup"
        )
        sign_in.set_password(self.services, added, name, PASSWORD)
        browser = self.browser()
        answer = browser.post(
            "/signin",
            data={"username": name, "password": PASSWORD, "next": "/"},
            headers=ORIGIN,
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        return browser

    def bundle(self, version: str = "1", app: str = "hello") -> str:
        root = self.tmp / f"src-{app}-{version}"
        root.mkdir()
        (root / "conveyor.yml").write_text(f"name: {app}\ntype: fastapi\n")
        (root / "app.py").write_text(f"VERSION = {version!r}\napp = None\n")
        built = build_bundle(root, root / "bundle.tar.gz")
        return register_bundle(self.services, built.archive, built.provenance, "setup").bundle_id

    def __post_init__(self) -> None:
        self._clients: list[TestClient] = []


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
def console(store, tmp_path: Path) -> Iterator[Console]:
    services = Services(store, MemoryRuntime())
    context = ApiContext(services, Background())
    found = Console(services, context, tmp_path)
    try:
        yield found
    finally:
        context.background.close(10)
