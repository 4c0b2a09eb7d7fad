"""End-to-end fixtures: a real store, the real proxy on free ports, the local runtime running
real app processes built from the examples."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.bundles.build import build_bundle
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Environment
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.local import LocalRuntime
from conveyor.runtime.proxy import Proxy
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services
from conveyor.storage import catalog
from conveyor.storage.store import Store

from .server import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Platform:
    services: Services
    runtime: LocalRuntime
    proxy: Proxy
    ports: dict[str, int]
    work: Path

    def url(self, environment: str, app: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[environment]}/{app}{path}"

    def upload(self, source: Path, *, by: str = "ana") -> str:
        """Build the bundle of an app directory (copied, so examples stay clean) and upload."""
        copy = self.work / "sources" / f"{source.name}-{len(list(self.work.glob('sources/*')))}"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".conveyor", "__pycache__"))
        built = build_bundle(copy)
        return register_bundle(self.services, built.archive, built.provenance, by).bundle_id


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    # As `conveyor serve` does: everything the server writes is its own (0600, directories
    # 0700), so what an app must read is made readable on purpose, never by the umask.
    umask = os.umask(0o077)
    home = tmp_path / "home"
    store = Store.open(home)
    proxy = Proxy()
    proxy.start()
    ports = {e.name: proxy.add_listener(e.name, "127.0.0.1", 0) for e in DEFAULT_ENVIRONMENTS}
    with store.transaction() as connection:
        catalog.save_environments(
            connection,
            [
                Environment(e.name, e.position, ports[e.name], e.config_name, e.policy)
                for e in DEFAULT_ENVIRONMENTS
            ],
        )
    builder = RuntimeBuilder(home, cache_dir=Path(os.environ["UV_CACHE_DIR"]))
    runtime = LocalRuntime(home, proxy, builder=builder, drain_timeout=10, websocket_grace=1)
    try:
        yield Platform(Services(store, runtime), runtime, proxy, ports, tmp_path)
    finally:
        runtime.supervisor.stop_all(timeout=5)
        proxy.stop()
        store.close()
        os.umask(umask)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real `conveyor serve` with dev, test and prod on free ports (see server.py)."""
    running = Server(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()
