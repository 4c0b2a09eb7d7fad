"""The real `conveyor` command against the real control API served in process: uvicorn in a
background thread on a free loopback port, serving create_app over a real store (SQLite and
PostgreSQL) and the in-memory runtime, so the CLI, the HTTP client, the API and the services
all run as they do for a person, in a second or so and without starting apps.

The CLI runs in process (conveyor.cli.main) with the first admin's real token in its
environment (CONVEYOR_SERVER, CONVEYOR_TOKEN, CONVEYOR_CREDENTIALS to a file of the test's).
The server is stopped when the test ends, whether it passed or not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from conveyor.api.app import ApiContext, create_app
from conveyor.api.background import Background
from conveyor.domain.access import parse_grant
from conveyor.domain.retention import RetentionSettings
from conveyor.runtime.memory import MemoryRuntime
from conveyor.services import tokens, users
from conveyor.services.context import Services
from conveyor.services.retention import Retention
from conveyor.storage.store import Store

Run = Callable[..., tuple[int, str, str]]


@dataclass
class LiveServer:
    url: str
    services: Services
    runtime: MemoryRuntime
    context: ApiContext
    admin_token: str
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    def token_of(self, name: str, *roles: str) -> str:
        """Add the user (with ``ENV:ROLE`` roles) and return a token of theirs."""
        grants = [parse_grant(r) for r in roles]
        users.add_user(self.services, name, grants, admin=False, actor="setup")
        _, token = tokens.create_token(
            self.services, users.get_user(self.services, name), None, None
        )
        return token

    def use_token(self, token: str | None) -> None:
        """The token the CLI sends from now on (None: none at all)."""
        if token is None:
            self.monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("CONVEYOR_TOKEN", token)

    def app_dir(self, version: str = "1", *, name: str = "hello", kind: str = "fastapi") -> Path:
        """A tiny app's source directory, different per version (so each is a new bundle);
        the same one when asked again."""
        root = self.tmp / f"{name}-{version}"
        if root.exists():
            return root
        root.mkdir()
        entry = "entrypoint: job.py\n" if kind == "job" else ""
        (root / "conveyor.yml").write_text(f"name: {name}\ntype: {kind}\n{entry}")
        source = "job.py" if kind == "job" else "app.py"
        (root / source).write_text(f"VERSION = {version!r}\napp = None\n")
        return root


@pytest.fixture
def live(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    runtime = MemoryRuntime()
    services = Services(store, runtime)
    context = ApiContext(services, Background())
    context.retention = Retention(services, tmp_path / "home", RetentionSettings())
    admin = users.add_user(services, "root", [], admin=True, actor="setup")
    _, token = tokens.create_token(services, admin, None, None)
    config = uvicorn.Config(
        create_app(context),
        host="127.0.0.1",
        port=0,  # the system picks a free port: no race with other tests
        log_level="warning",
        lifespan="off",
        ws="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="conveyor-test-api", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the in-process API server did not start")
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("CONVEYOR_SERVER", url)
        monkeypatch.setenv("CONVEYOR_TOKEN", token)
        monkeypatch.setenv("CONVEYOR_CREDENTIALS", str(tmp_path / "credentials.json"))
        monkeypatch.setenv("NO_COLOR", "1")
        yield LiveServer(url, services, runtime, context, token, tmp_path, monkeypatch)
    finally:
        server.should_exit = True
        thread.join(30)
        context.background.close(10)
