"""The examples Conveyor ships show the right way: settings from config.yml, nothing
hard-coded. If one must hard-code something, it says so with `# conveyor: ignore`."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.lint import lint

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("include_tests", [False, True])
def test_the_examples_are_clean(include_tests):
    report = lint(EXAMPLES, include_tests=include_tests)
    assert report.problems == ()
    assert [f"{f.where}: {f.literal}" for f in report.findings] == []
    assert report.files >= 10  # the walk did find the apps (and their notebook)
    assert report.files < 30  # ... and no virtual environment or bundle


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_each_example_passes_the_check_s_lint_step(example):
    from conveyor.ci.check import run_checks

    step = next(
        run_checks(EXAMPLES / example, environments=["dev"], tests_env="dev", progress=print)
    )
    assert step.ok is True, step.detail
