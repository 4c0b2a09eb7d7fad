"""Sleep: a routed release with no traffic for a while stops its processes; the next request
wakes it from the runtime it already has (no build, no checks, the same release).

How long "a while" is comes from three places, the first that says winning: the environments
file (``sleep_after:`` per environment, the platform engineers' word), the app's conveyor.yml
(``sleep_after:``), and the built-in default: 15 minutes in dev and test, never elsewhere.
"""

from __future__ import annotations

from conveyor.domain.schedules import parse_duration
from conveyor.errors import InvalidInput

#: How long an app in dev or test may sit idle before it sleeps, unless told otherwise.
DEFAULT_SLEEP_AFTER = 15 * 60
#: Environments whose apps sleep by default: the ones people try things in.
SLEEPY_ENVIRONMENTS = frozenset({"dev", "test"})
OFF = "off"
#: The longest idle time a setting may give (longer is as good as off).
LONGEST = 7 * 86400


def parse_sleep_after(value: object, what: str = "sleep_after") -> str:
    """A checked `sleep_after` setting in its canonical text: "off" or a duration ("15m").
    YAML reads a bare ``off`` (or ``no``, ``false``) as False, which means off too."""
    if value is False or (isinstance(value, str) and value.strip().lower() in (OFF, "never")):
        return OFF
    if value is True:
        raise InvalidInput(f"{what}: give a duration such as 15m, or off")
    try:
        seconds = parse_duration(value, what) if len(str(value)) <= 16 else 0
    except InvalidInput:
        seconds = 0
    if not 0 < seconds <= LONGEST:
        raise InvalidInput(
            f"{what}: {value!r} is neither a duration of at most 7 days nor off; write e.g. "
            "15m, 2h or off"
        )
    return str(value).strip()


def sleep_seconds(setting: str) -> int | None:
    """A canonical setting as seconds (None: off)."""
    return None if setting == OFF else parse_duration(setting, "sleep_after")


def effective_sleep_after(
    environment: str, environment_setting: str, app_setting: str | None
) -> int | None:
    """How many idle seconds an app in ``environment`` sleeps after (None: never): the
    environments file's setting, else the app's, else the default for the environment."""
    if environment_setting:
        return sleep_seconds(environment_setting)
    if app_setting:
        return sleep_seconds(app_setting)
    return DEFAULT_SLEEP_AFTER if environment in SLEEPY_ENVIRONMENTS else None


def describe_seconds(seconds: int) -> str:
    """600 -> "10 min", 90 -> "90 s", 7200 -> "2 h"."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
