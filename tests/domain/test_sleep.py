"""How long an idle app runs before it sleeps: the environments file, then the app, then the
environment's default (dev and test sleep, prod never)."""

from __future__ import annotations

import pytest

from conveyor.domain.sleep import (
    DEFAULT_SLEEP_AFTER,
    describe_seconds,
    effective_sleep_after,
    parse_sleep_after,
)
from conveyor.errors import InvalidInput


@pytest.mark.parametrize(
    ("environment", "environment_setting", "app_setting", "expected"),
    [
        ("dev", "", None, DEFAULT_SLEEP_AFTER),
        ("test", "", None, DEFAULT_SLEEP_AFTER),
        ("prod", "", None, None),
        ("staging", "", None, None),
        ("dev", "", "5m", 300),
        ("dev", "", "off", None),
        ("prod", "", "30m", 1800),  # an app may choose to sleep in prod
        ("prod", "off", "30m", None),  # the environments file has the last word
        ("dev", "2h", "off", 7200),
        ("staging", "90s", None, 90),
    ],
)
def test_the_environments_file_wins_then_the_app_then_the_default(
    environment, environment_setting, app_setting, expected
):
    assert effective_sleep_after(environment, environment_setting, app_setting) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(False, "off"), ("Off", "off"), ("never", "off"), ("15m", "15m")]
)
def test_settings_read_yaml_off_as_off(value, expected):
    assert parse_sleep_after(value) == expected


@pytest.mark.parametrize("value", [True, "soon", "0s", "-5m", 1.5, "8d", "9" * 40 + "s"])
def test_a_bad_setting_says_what_to_write(value):
    with pytest.raises(InvalidInput, match="15m"):
        parse_sleep_after(value)


def test_durations_read_naturally():
    assert [describe_seconds(s) for s in (45, 600, 7200, 90)] == ["45 s", "10 min", "2 h", "90 s"]
