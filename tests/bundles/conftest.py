from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Path]:
    """make_app(files={path: text}, name="app") -> directory with a conveyor.yml."""

    def _make(
        files: dict[str, str] | None = None, *, where: str = "app", app_file: str | None = None
    ) -> Path:
        root = tmp_path / where
        root.mkdir(parents=True)
        (root / "conveyor.yml").write_text(
            textwrap.dedent(app_file or "name: hello\ntype: fastapi\n")
        )
        for relative, text in (files or {"app.py": "app = None\n"}).items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    return _make
