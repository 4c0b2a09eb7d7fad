"""`conveyor check` and `conveyor ci` on a merge request, for an app whose config.yml has only
a `default:` section: `config.get()` uses `default` in every environment, so the check warns
and passes, unless conveyor.yml asks for `ci: {config: strict}`. Real problems still fail.

Run through the console script on a real project directory, as CI runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
APP = "name: one-section\ntype: command\nentrypoint: python serve.py\n"


def project(root: Path, config: str, app: str = APP) -> Path:
    root.mkdir()
    (root / "conveyor.yml").write_text(app)
    (root / "serve.py").write_text("print('serving')\n")
    (root / "config.yml").write_text(config)
    return root


def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI"))}
    env.pop("CONVEYOR_ENV", None)
    return subprocess.run(
        [CONVEYOR, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_check_passes_a_default_only_config_with_warnings_naming_the_fallback(tmp_path):
    app = project(tmp_path / "app", "default:\n  horizon: 3\n")
    done = conveyor("check", ".", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config: ok" in done.stdout
    for name in ("dev", "test", "prod"):
        assert f"config.yml has no section '{name}'; the app reads `default` there" in done.stdout
    assert "FAILED" not in done.stdout


def test_ci_on_a_merge_request_passes_it_too(tmp_path):
    app = project(tmp_path / "app", "default:\n  horizon: 3\n")
    done = conveyor("ci", "--event", "review", "--branch", "feature", cwd=app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config: ok" in done.stdout
    assert "config.yml has no section 'dev'; the app reads `default` there" in done.stdout


def test_strict_projects_fail_on_a_missing_section(tmp_path):
    app = project(
        tmp_path / "app", "default:\n  horizon: 3\nprod: {}\n", APP + "ci:\n  config: strict\n"
    )
    done = conveyor("ci", "--event", "review", "--branch", "feature", cwd=app)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "config: FAILED" in done.stdout
    assert "has no section 'dev'" in done.stdout and "has no section 'test'" in done.stdout
    assert "has no section 'prod'" not in done.stdout


def test_real_problems_still_fail(tmp_path):
    app = project(tmp_path / "app", "default:\n  horizon: 3\ndev:\n  inherits: staging\n")
    done = conveyor("check", ".", cwd=app)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "config: FAILED" in done.stdout
    assert "inherits from 'staging', which is not a section" in done.stdout
    assert "config.yml has no section 'test'; the app reads `default` there" in done.stdout


def test_an_unknown_ci_config_value_is_a_clear_error(tmp_path):
    app = project(tmp_path / "app", "default: {}\n", APP + "ci:\n  config: loose\n")
    done = conveyor("check", ".", cwd=app)
    assert done.returncode != 0
    assert "field `ci.config`" in done.stderr and "strict" in done.stderr
    assert "Traceback" not in done.stderr
