"""The app-facing library `conveyor.config` imports nothing from Conveyor's server parts and
needs only PyYAML, because it is made importable inside every app's runtime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PACKAGE = ROOT / "src" / "conveyor" / "config"
ALLOWED_CONVEYOR_MODULES = ("conveyor.config", "conveyor.errors")


def test_config_package_imports_only_itself_and_errors():
    offenders = []
    for path in sorted(CONFIG_PACKAGE.rglob("*.py")):
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


def test_using_config_loads_only_the_standard_library_and_yaml(tmp_path):
    (tmp_path / "config.yml").write_text("default:\n  url: !env [URL, local]\n")
    # Whatever PyYAML itself loads is allowed; after that, only conveyor may be new.
    probe = (
        "import json, sys, yaml\n"
        "before = set(sys.modules)\n"
        "from conveyor import config\n"
        "assert config.get('url') == 'local'\n"
        "config.get()\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    loaded = set(json.loads(result.stdout))
    assert loaded == {"conveyor"}, loaded
