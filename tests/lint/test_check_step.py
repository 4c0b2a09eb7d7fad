"""The lint step of `conveyor check`."""

from __future__ import annotations

from conveyor.ci.check import run_checks


def lint_step(directory):
    return next(run_checks(directory, environments=["dev"], tests_env="dev", progress=print))


def test_a_clean_app_passes(project):
    root = project(
        {
            "app.py": 'from conveyor import config\nURL = config.get("forecast_url")\n',
            "tests/test_app.py": 'BASE = "http://localhost:8000"\n',
        }
    )
    step = lint_step(root)
    assert (step.name, step.ok) == ("lint", True)
    assert step.detail == "no hard-coded hosts, URLs or output paths (1 file checked)"


def test_findings_fail_the_step_and_are_listed(project):
    root = project({"app.py": 'URL = "https://forecast.example.com"\n'})
    step = lint_step(root)
    assert step.ok is False
    lines = step.detail.splitlines()
    assert lines[0].startswith("app.py:1:7: url https://forecast.example.com: add forecast_url")
    assert lines[-1].startswith("1 hard-coded location (1 file checked)")


def test_unparsable_files_are_named_but_do_not_fail_it(project):
    root = project({"app.py": "x = 1\n", "broken.py": "def f(:\n"})
    step = lint_step(root)
    assert step.ok is True
    assert "warning: broken.py:1: not checked" in step.detail
    assert step.detail.splitlines()[-1].startswith("no hard-coded")
