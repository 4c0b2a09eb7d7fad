from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.bundles.build import build_bundle
from conveyor.runtime.memory import MemoryRuntime
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services


@pytest.fixture
def runtime() -> MemoryRuntime:
    return MemoryRuntime()


@pytest.fixture
def services(store, runtime) -> Services:
    return Services(store=store, runtime=runtime)


@pytest.fixture
def upload(services, tmp_path: Path):
    """upload(version) -> bundle id of a real bundle of app `hello` with that app.py."""
    counter = iter(range(1000))

    def _upload(version: str, *, by: str = "ana", checks: str = "") -> str:
        root = tmp_path / f"src-{next(counter)}"
        root.mkdir()
        (root / "conveyor.yml").write_text(f"name: hello\ntype: fastapi\n{checks}")
        (root / "app.py").write_text(f"VERSION = {version!r}\napp = None\n")
        built = build_bundle(root, root / "bundle.tar.gz")
        return register_bundle(services, built.archive, built.provenance, by).bundle_id

    return _upload
