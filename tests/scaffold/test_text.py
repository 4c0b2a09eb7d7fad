"""The small pieces of text `conveyor init` writes: YAML scalars and app names."""

from __future__ import annotations

import pytest
import yaml

from conveyor.domain.apps import APP_NAME
from conveyor.scaffold.project import app_name
from conveyor.scaffold.yaml_text import scalar


@pytest.mark.parametrize(
    "value",
    [
        "app:app",
        "python -m pytest -q tests",
        "factory:create_app()",
        "/health",
        "services/forecast api",
        "yes",
        "on",
        "null",
        "~",
        "1.0",
        "0o17",
        "",
        " padded ",
        "a: b",
        "x #y",
        "#x",
        "-x",
        "@x",
        "[x]",
        "{x}",
        "it's",
        'say "hi"',
        "tab\there",
        "ünïcode",
    ],
)
def test_a_scalar_reads_back_as_the_same_string(value):
    assert yaml.safe_load(f"key: {scalar(value)}\n") == {"key": value}


def test_ordinary_values_stay_plain():
    assert scalar("app:app") == "app:app"
    assert scalar("python -m pytest -q tests") == "python -m pytest -q tests"
    assert scalar("yes") == '"yes"'


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("hello", "hello"),
        ("Hello_API", "hello-api"),
        ("Sales Forecast (v2)", "sales-forecast-v2"),
        ("café-report", "cafe-report"),
        ("2024-report", "report"),
        ("--x--", "x"),
        ("2024", ""),
        ("a" * 80, "a" * 63),
    ],
)
def test_app_names_from_directory_names(directory, name):
    assert app_name(directory) == name
    assert name == "" or APP_NAME.fullmatch(name)
