"""conveyor.yml: defaults for a minimal file, and errors that name file, field and fix."""

from __future__ import annotations

import pytest

from conveyor.bundles.app_file import read_app_file
from conveyor.domain.apps import AppType, SmokeCheck
from conveyor.errors import ManifestError


def test_minimal_file_gets_sensible_defaults(make_app):
    root = make_app()
    spec = read_app_file(root)
    assert spec.name == "hello"
    assert spec.type is AppType.FASTAPI
    assert spec.entrypoint == "app:app"
    assert spec.python == ">=3.11"
    assert spec.requirements is None
    assert spec.health == "/"
    assert spec.workers == 1
    assert spec.branches == (("main", "prod"), ("test", "test"))
    assert spec.required_checks() == ("health",)


def test_full_file(make_app):
    root = make_app(
        {"app.py": "", "requirements.txt": "fastapi\n"},
        app_file="""
        name: forecast-api
        type: fastapi
        entrypoint: service:api
        python: ">=3.12"
        health: /health
        workers: 2
        exclude: [data/**]
        checks:
          tests: pytest -q
          smoke:
            - /health
            - {path: /forecast, status: 200, contains: north}
        ci:
          branches: {release: prod, develop: test}
        """,
    )
    spec = read_app_file(root)
    assert spec.entrypoint == "service:api"
    assert spec.requirements == "requirements.txt"  # found beside conveyor.yml
    assert spec.checks.smoke == (SmokeCheck("/health"), SmokeCheck("/forecast", 200, "north"))
    assert spec.required_checks() == ("health", "smoke", "tests")
    assert spec.branches == (("develop", "test"), ("release", "prod"))
    assert spec.exclude == ("data/**",)


@pytest.mark.parametrize(
    ("app_file", "expected"),
    [
        ("type: fastapi\n", "field `name`: is required"),
        ("name: Hello World\ntype: fastapi\n", "field `name`: 'Hello World' is not a valid app"),
        ('name: "hello\\n"\ntype: fastapi\n', "field `name`: 'hello\\n' is not a valid app"),
        ("name: a\ntype: django\n", "field `type`: 'django' is not a type; use one of: fastapi"),
        ("name: a\ntype: fastapi\nworkers: 0\n", "field `workers`: must be a whole number"),
        ("name: a\ntype: fastapi\nhealth: status\n", "field `health`: 'status' must be a path"),
        ("name: a\ntype: fastapi\nrequirements: req.txt\n", "req.txt does not exist"),
        ("name: a\ntype: fastapi\nchecks: {smoke: /x}\n", "`checks.smoke`: must be a list"),
        ("name: a\ntype: fastapi\nchecks: {lint: x}\n", "`checks.lint`: unknown check"),
        ("name: a\ntype: fastapi\nchecks: {smoke: [{status: 200}]}\n", "smoke[0].path`: is"),
        ("name: a\ntype: fastapi\nport: 80\n", "unknown field port; known fields:"),
        ("name: a\ntype: command\n", "field `entrypoint`: a command app needs the command"),
        ("name: a\ntype: job\n", "field `entrypoint`: a job needs the command to run"),
        ("name: a\ntype: fastapi\nschedule: '@daily'\n", "a fastapi app does not run on a"),
        ("name: a\ntype: job\nentrypoint: x\nschedule: daily\n", "not a cron schedule"),
        (
            "name: a\ntype: notebook\nschedule: {cron: '@daily', timezone: Mars}\n",
            "'Mars' is not a time zone",
        ),
        ("name: a\ntype: job\nentrypoint: x\ntimeout: soon\n", "`timeout`: 'soon' is not a"),
        ("name: a\ntype: fastapi\nsleep_after: later\n", "`sleep_after`: write a duration"),
        ("name: a\ntype: fastapi\nsleep_after: yes\n", "`sleep_after`: write a duration"),
        ("- a\n", "expected a mapping of fields"),
        ("name: [a\n", "line 2, column 1: not valid YAML"),
    ],
)
def test_errors_name_the_file_the_field_and_the_fix(make_app, app_file, expected):
    root = make_app(app_file=app_file)
    with pytest.raises(ManifestError) as caught:
        read_app_file(root)
    assert str(root / "conveyor.yml") in str(caught.value)
    assert expected in str(caught.value)


def test_a_job_with_a_schedule_and_a_timeout(make_app):
    root = make_app(
        app_file="name: nightly\ntype: job\nentrypoint: python refresh.py\n"
        "schedule: {cron: '30 2 * * *', timezone: Europe/Berlin}\ntimeout: 20m\n"
    )
    spec = read_app_file(root)
    assert spec.type is AppType.JOB and spec.timeout == 1200
    assert spec.schedule is not None and spec.schedule.describe() == "30 2 * * * (Europe/Berlin)"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [("", None), ("sleep_after: 10m\n", "10m"), ("sleep_after: off\n", "off")],
)
def test_sleep_after_is_a_duration_or_off(make_app, declared, expected):
    root = make_app(app_file=f"name: a\ntype: fastapi\n{declared}")
    assert read_app_file(root).sleep_after == expected


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="has no conveyor.yml; create one with at least"):
        read_app_file(tmp_path)
