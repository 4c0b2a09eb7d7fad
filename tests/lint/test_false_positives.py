"""Strings that are not hard-coded locations, in code that looks like an app's."""

from __future__ import annotations

from .conftest import findings

SAFE = '''
"""Forecast report. Reads https://forecast.example.com/docs and writes /data/out/scores.csv.

Connection: postgresql://ana:secret@warehouse.example.com/analytics
"""

import logging
import re
from pathlib import Path

__version__ = "1.2.3"
VERSION = "2024.10.1"
SCHEMA = "http://json-schema.org/draft-07/schema#"
SVG = "http://www.w3.org/2000/svg"
URL_PATTERN = re.compile(r"^https?://(?P<host>[^/:]+)(?::\\d+)?/")
HOST_PATTERN = r"(\\w+\\.)+example\\.com"
EMAIL = "ana@example.com"
CONTENT_TYPE = "text/html; charset=utf-8"
MEDIA = {"csv": "text/csv", "json": "application/json"}
DATE_FORMAT = "%Y-%m-%d"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
OUTPUT = Path("output")
OUTPUT_FILE = "scores.csv"
ROUTES = ["/", "/health", "/api/v1/forecast"]

log = logging.getLogger(__name__)


class Report:
    """Writes the report to /srv/reports; see https://wiki.example.com/reports."""

    def __init__(self, directory: str = "reports") -> None:
        self.directory = Path(directory)

    def save(self, frame) -> Path:
        """Save to disk."""
        target = self.directory / "scores.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target, encoding="utf-8", index=False)
        return target


def check(url: str) -> bool:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not a URL: {url!r}; see https://docs.example.com/urls for help")
    return url.rstrip("/").endswith("/forecast")


def describe(region: str, total: float) -> str:
    log.info("total for %s is %.1f", region, total)
    return f"{region:>8}: {total:,.1f} units ({total / 100:.1%})"


def page(body: str) -> str:
    return f'<a href="https://example.com/help">help</a><div class="x">{body}</div>'


# The comment mentions http://localhost:8000 and /data/out.csv: comments are not code.
'''


def test_an_ordinary_module_has_no_findings():
    assert findings(SAFE) == []


def test_strings_standing_alone_are_not_read():
    assert not findings(
        """
        def f():
            '''https://forecast.example.com'''
            "http://localhost:8000"
            return 1
        """
    )


def test_unusual_syntax_does_not_break_the_rules():
    found = findings(
        """
        class Client(Base, url="https://forecast.example.com"):
            pass

        match value:
            case "https://a.example.com":
                pass
        fetch = lambda url="https://b.example.com": url
        f(*["https://c.example.com"])
        if (u := "https://d.example.com"):
            pass
        x = {**base, "host": "db.example.com"}
        y = {1: "/data/out"}
        type(self).__name__
        """
    )
    assert [f.literal for f in found] == [
        "https://forecast.example.com",
        "https://a.example.com",
        "https://b.example.com",
        "https://c.example.com",
        "https://d.example.com",
        "db.example.com",
    ]
