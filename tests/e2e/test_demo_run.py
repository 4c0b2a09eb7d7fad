"""`make demo` runs `conveyor demo`; here it runs to the end (`--no-wait`) as a new user's would."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def four_free_ports() -> int:
    """A base port such that it and the next three are free."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + 4):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise AssertionError("no four consecutive free ports")


def test_the_demo_goes_dev_test_prod_and_prod_refuses_the_failing_change(tmp_path):
    base = four_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_UV_CACHE"] = os.environ["UV_CACHE_DIR"]
    env["NO_COLOR"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--no-wait", "--port", str(base)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "check tests: FAILED" in out
    # Two people: prod refused ana's promotion until bob, who did not deploy, approved.
    assert "prod requires 1 approval of bundle" in result.stderr
    assert "(by bob)" in out and "bob$ conveyor approve forecast-api --env prod" in out
    assert "prod only takes bundles whose checks passed in test" in result.stderr
    assert '"horizon_days":14' in out  # prod still serves the previous version
    status = out[out.index("$ conveyor status") :]
    rows = {line.split()[0]: line for line in status.splitlines()[2:5]}
    for app in ("forecast-api", "sales-dashboard", "quarterly-report"):
        assert rows[app].count("✓") == 3, rows  # live and verified in dev, test and prod
    assert f"http://127.0.0.1:{base}/" in out[out.index("== The console") :]
    assert re.search(r"sign in as ana \(deploys, promotes\), password \S{8,}", out)
    assert re.search(r"or as bob \(approves for prod\), password \S{8,}", out)
    assert "demo server stopped" in result.stderr
