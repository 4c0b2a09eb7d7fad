"""Drift through a real server: a package installed by hand into a live release's runtime and
a file edited inside it are both found; `conveyor repair` rebuilds the runtime and moves the
release onto it with a blue-green switch, after which no drift remains."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .server import Server, make_app

pytestmark = pytest.mark.e2e


def make_writable(tree: Path) -> None:
    for directory, _, files in os.walk(tree):
        os.chmod(directory, os.stat(directory).st_mode | stat.S_IWUSR)
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def test_drift_found_and_repaired(tmp_path):
    server = Server(tmp_path)
    try:
        server.start()
        assert server.cli("deploy", str(make_app(tmp_path, "v1")), "--env", "test").code == 0
        clean = server.cli("drift", "--env", "test")
        assert clean.code == 0, clean
        assert "matches its lock" in clean.out and "hello/test" in clean.out

        [runtime] = [p for p in (server.home / "runtimes").iterdir() if len(p.name) == 64]
        make_writable(runtime)  # what someone "fixing it by hand" does first
        uv = Path(sys.executable).parent / "uv"
        subprocess.run(
            [str(uv), "pip", "install", "--python", str(runtime / "bin" / "python"), "six"],
            check=True,
            capture_output=True,
            env={**os.environ, "UV_CACHE_DIR": os.environ["UV_CACHE_DIR"]},
            timeout=300,
        )
        [module] = runtime.glob("lib/python*/site-packages/yaml/__init__.py")
        edited = module.with_suffix(".edited")
        edited.write_text(module.read_text() + "\n# a quick fix\n")
        os.replace(edited, module)  # a new file: uv's cache keeps the original

        found = server.cli("drift", "--env", "test")
        assert found.code == 2, found
        assert "extra: six" in found.out
        assert "site-packages/yaml/__init__.py (pyyaml)" in found.out
        assert "file changed: lib/python" in found.out
        as_json = server.cli("drift", "--json")
        assert as_json.code == 2 and '"drifted": true' in as_json.out

        # An operation the CLI follows (the request does not wait for the rebuild).
        repaired = server.cli("repair", "--env", "test")
        assert repaired.code == 0, repaired
        assert "repair in test" in repaired.err and "is live in test" in repaired.out
        assert "repaired: 1 release(s) live on rebuilt runtimes" in repaired.out
        assert server.cli("drift").code == 0
        assert server.get("test", "hello") == (200, "v1")
        kinds = [r["kind"] for r in server.cli_json("history", "hello", "--env", "test")]
        assert kinds == ["repair", "deploy"]
        nothing = server.cli("repair")  # every environment
        assert nothing.code == 0, nothing
        assert "repair in every environment" in nothing.err
        assert "nothing has drifted; nothing to repair" in nothing.out
    finally:
        server.stop()


def test_drift_compares_the_server_with_its_environments_file(tmp_path):
    server = Server(tmp_path)
    try:
        server.start()
        assert server.cli("drift", "--file", str(server.environments_file)).code == 0
        changed = tmp_path / "changed.yml"
        changed.write_text(
            server.environments_file.read_text().replace(
                f"prod: {{port: {server.ports['prod']}}}",
                f"prod: {{port: {server.ports['prod']}, approvals: 2}}",
            )
        )
        drifted = server.cli("drift", "--file", str(changed))
        assert drifted.code == 2, drifted
        assert "~ prod.policy.approvals: 0 -> 2" in drifted.out
    finally:
        server.stop()
