"""The app-facing libraries `conveyor.config` and `conveyor.data` import nothing from Conveyor's
server parts and need only PyYAML (and, for a data connection, the app's own SQLAlchemy),
because they are made importable inside every app's runtime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_FACING = [
    ROOT / "src" / "conveyor" / "config",
    ROOT / "src" / "conveyor" / "data",
    ROOT / "src" / "conveyor" / "outputs_server.py",
]
ALLOWED_CONVEYOR_MODULES = ("conveyor.config", "conveyor.data", "conveyor.errors")


def test_app_facing_packages_import_only_themselves_and_errors():
    offenders = []
    files = [
        p
        for package in APP_FACING
        for p in ([package] if package.is_file() else package.rglob("*.py"))
    ]
    for path in sorted(files):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.startswith("conveyor") and not name.startswith(ALLOWED_CONVEYOR_MODULES):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def modules_loaded_by(code: str, cwd: Path, preloaded: str = "") -> set[str]:
    """The top-level modules outside the standard library that ``code`` loads, in a fresh
    Python, beyond those ``preloaded`` loads first."""
    probe = (
        f"import json, sys\n{preloaded}\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return set(json.loads(result.stdout))


def test_using_config_loads_only_the_standard_library_and_yaml(tmp_path):
    (tmp_path / "config.yml").write_text("default:\n  url: !env [URL, local]\n")
    # Whatever PyYAML itself loads is allowed; after that, only conveyor may be new.
    code = "from conveyor import config\nassert config.get('url') == 'local'\nconfig.get()"
    assert modules_loaded_by(code, tmp_path, preloaded="import yaml") == {"conveyor"}


def test_importing_data_loads_only_the_standard_library(tmp_path):
    code = "from conveyor import data\ndata.connections()"
    assert modules_loaded_by(code, tmp_path) == {"conveyor"}  # SQLAlchemy only on connect()
