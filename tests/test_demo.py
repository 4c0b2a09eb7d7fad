"""`make demo` runs examples/config-tour/tour.sh; run it here as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_config_tour_runs_and_shows_each_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "R_CONFIG"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "config-tour" / "tour.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[dev] forecast from http://localhost:8000/forecast" in out
    assert "[test] forecast from https://forecast-test.example.com/forecast" in out
    assert "[prod] regions: north, south, east, west" in out
    assert "demo-secret" not in out
    assert "WAREHOUSE_PASSWORD is not set" in result.stderr
    assert "ok (4 sections; checked for test, prod)" in out
