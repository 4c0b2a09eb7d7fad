"""docs/tutorial.md, followed step by step with a real server and the real CLI: the dashboard of
examples/tutorial-dashboard reads its environment's forecast API from config.yml, goes from Dev
through Test to Prod, a change whose tests fail is refused by Prod, the fix ships, and Prod is
rolled back to the previous version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from .server import Server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APP = "forecast-dashboard"
SECRET = "fk-live-7c21"

# The line the tutorial changes in app.py, and the two changes it makes (steps 7 and 8).
V1_DAYS = (
    '    days = [{"day": day, "value": value} for day, value in enumerate(forecast["values"])]\n'
)
BROKEN_DAYS = (
    '    values = forecast["values"]\n'
    '    days = [{"day": day, "value": value} for day, value in '
    "zip(range(1, len(values)), values)]\n"
)
FIXED_DAYS = (
    '    days = [{"day": day, "value": value} for day, value in '
    'enumerate(forecast["values"], start=1)]\n'
)


def copy_app(source: Path, target: Path) -> Path:
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns(".conveyor", "__pycache__", ".pytest_cache")
    )
    return target


def changed(app: Path, name: str, old: str, new: str) -> Path:
    """A copy of the app with one edit to app.py."""
    copy = copy_app(app, app.parent / name)
    code = (copy / "app.py").read_text()
    assert old in code
    (copy / "app.py").write_text(code.replace(old, new))
    return copy


def summary(server: Server, environment: str) -> dict[str, Any]:
    status, body = server.get(environment, APP, "/api/summary?region=north")
    assert status == 200, body
    return dict(json.loads(body))


def live_bundle(server: Server, environment: str) -> str:
    status = server.cli_json("status")
    assert isinstance(status, dict)
    [cell] = [c for c in status["cells"] if (c["app"], c["environment"]) == (APP, environment)]
    return str(cell["bundle"])


def history(server: Server, environment: str) -> list[dict[str, Any]]:
    releases = server.cli_json("history", APP, "--env", environment)
    assert isinstance(releases, list)
    return releases


def ok(server: Server, *args: str, token: str | None = None) -> str:
    result = server.cli(*args, token=token)
    assert result.code == 0, result
    return result.out


ENVIRONMENTS = (
    "environments:\n  dev: {{port: {dev}}}\n  test: {{port: {test}}}\n"
    "  prod: {{port: {prod}, approvals: 1, approver_not_deployer: true}}\n"
)


def test_the_tutorial(tmp_path):
    server = Server(tmp_path, ENVIRONMENTS)
    api = copy_app(EXAMPLES / "forecast-api", tmp_path / "forecast-api")
    v1 = copy_app(EXAMPLES / "tutorial-dashboard", tmp_path / APP)
    # config.yml names the default listener ports; this server's are free ports.
    config = (v1 / "config.yml").read_text()
    for name, default in (("dev", 8701), ("test", 8702), ("prod", 8703)):
        assert f":{default}/" in config
        config = config.replace(f":{default}/", f":{server.ports[name]}/")
    (v1 / "config.yml").write_text(config)
    broken = changed(v1, "broken", V1_DAYS, BROKEN_DAYS)
    fixed = changed(v1, "fixed", V1_DAYS, FIXED_DAYS)
    api_url = "http://127.0.0.1:{}/forecast-api/forecast"
    try:
        server.start()

        # 2. What Prod will get, before anything is deployed.
        shown = ok(server, "config", "show", "--env", "prod", "--file", str(v1 / "config.yml"))
        assert api_url.format(server.ports["prod"]) in shown
        assert "!env FORECAST_API_KEY, not set" in shown

        # 4. Bob approves for prod; the forecast API, in every environment, once he has.
        bob = server.user("bob", "prod:approver")
        ok(server, "deploy", str(api))
        ok(server, "promote", "forecast-api")
        waiting = server.cli("promote", "forecast-api", "--to", "prod")
        assert waiting.code == 3 and "prod requires 1 approval" in waiting.err, waiting
        own = server.cli("approve", "forecast-api", "--env", "prod")  # ana's does not count
        assert own.code == 0, own
        assert server.cli("promote", "forecast-api", "--to", "prod").code == 3
        approved = server.cli("approve", "forecast-api", "--env", "prod", token=bob)
        assert approved.code == 0 and "(by bob)" in approved.out, approved
        ok(server, "promote", "forecast-api", "--to", "prod")

        # 5. Deploy to dev: its checks pass; it reads dev's API (3 days).
        deployed = ok(server, "deploy", str(v1))
        assert "smoke: ok   GET / -> 200, 'Forecast for north' found" in deployed
        assert "tests: 2 passed" in deployed and "is live in dev" in deployed
        dev = summary(server, "dev")
        assert dev["horizon_days"] == 3 and [d["day"] for d in dev["days"]] == [0, 1, 2]

        # 6. Test reads test's API.
        ok(server, "promote", APP)
        status, page = server.get("test", APP, "/")
        assert status == 200 and "Forecast for north" in page
        assert f"data: {api_url.format(server.ports['test'])}" in page

        # Without its key, prod's release fails its checks and logs why (the tutorial's aside).
        ok(server, "approve", APP, "--env", "prod", "--comment", "UAT ok", token=bob)
        keyless = server.cli("promote", APP, "--to", "prod")
        assert keyless.code == 1, keyless
        assert "smoke: FAIL GET / -> 500" in keyless.out
        [failed] = history(server, "prod")
        assert failed["state"] == "failed"
        logs = ok(server, "logs", APP, "--env", "prod", "--release", str(failed["id"]))
        assert "UnresolvedValue" in logs and "FORECAST_API_KEY" in logs

        # With the key, as a secret, prod takes the bundle verified in test.
        ok(server, "vars", "set", APP, f"FORECAST_API_KEY={SECRET}", "--secret", "--env", "prod")
        ok(server, "promote", APP, "--to", "prod")
        prod = summary(server, "prod")
        assert prod["horizon_days"] == 14 and len(prod["days"]) == 14
        assert prod["days"][0]["day"] == 0
        first = live_bundle(server, "prod")
        assert first == live_bundle(server, "test") == live_bundle(server, "dev")
        assert "✓" in ok(server, "status")

        # 7. A change whose tests fail: test refuses it, then prod refuses it (exit 3).
        failing = server.cli("deploy", str(broken), "--env", "test")
        assert failing.code == 1, failing
        assert "AssertionError: assert 6 == 7" in failing.out
        assert "tests check failed" in failing.err and "nothing changed" in failing.err
        bad = history(server, "test")[0]
        assert bad["state"] == "failed" and bad["reason"] == "tests check failed"
        refused = server.cli("promote", APP, "--to", "prod", "--bundle", bad["bundle"][:10])
        assert refused.code == 3, refused
        assert f"its tests check failed in release {bad['id']}" in refused.err
        assert "deploy a fixed bundle to test" in refused.err
        assert f"conveyor promote {APP} --to prod" in refused.err
        assert live_bundle(server, "test") == live_bundle(server, "prod") == first
        assert summary(server, "test")["days"][0]["day"] == 0

        # 8. The fix: verified in test, different from prod, promoted.
        ok(server, "deploy", str(fixed), "--env", "test")
        diff = server.cli("diff", APP, "test", "prod")
        assert diff.code == 2, diff
        [bundle_row] = [line for line in diff.out.splitlines() if line.startswith("bundle ")]
        assert bundle_row.split()[-1] == "DIFFERENT"
        assert SECRET not in diff.out + diff.err
        assert server.cli("promote", APP, "--to", "prod").code == 3  # a new bundle: no approval
        ok(server, "approve", APP, "--env", "prod", token=bob)
        ok(server, "promote", APP, "--to", "prod")
        second = live_bundle(server, "prod")
        assert second != first
        prod = summary(server, "prod")
        assert [d["day"] for d in prod["days"]] == list(range(1, 15))

        # 9. Roll prod back: the previous bundle answers at prod's URL again.
        rolled = ok(server, "rollback", APP, "--env", "prod")
        assert "is live in prod" in rolled
        assert live_bundle(server, "prod") == first
        prod = summary(server, "prod")
        assert [d["day"] for d in prod["days"]] == list(range(14))
        assert live_bundle(server, "test") == second  # test keeps the fix
        kinds = [(r["kind"], r["state"], r["bundle"]) for r in history(server, "prod")]
        assert kinds[:3] == [
            ("rollback", "live", first),
            ("promote", "retired", second),
            ("promote", "retired", first),
        ]
    finally:
        server.stop()


def test_the_tutorial_shows_the_example_and_the_changes_the_test_makes():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    example = EXAMPLES / "tutorial-dashboard"
    for name in ("config.yml", "conveyor.yml"):
        assert (example / name).read_text() in tutorial, name
    tests = (example / "tests" / "test_dashboard.py").read_text()
    assert tests[tests.index("import os") :] in tutorial
    for line in (V1_DAYS, BROKEN_DAYS, FIXED_DAYS):
        assert line in tutorial, line
