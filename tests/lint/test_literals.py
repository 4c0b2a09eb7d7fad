"""Reading a string alone: what it names, and what of it may be shown."""

from __future__ import annotations

import pytest

from conveyor.lint import Kind
from conveyor.lint.literals import as_host, classify, is_absolute_path, looks_like_file, mask


@pytest.mark.parametrize(
    "text",
    [
        "https://",
        "http://{host}:8000",
        "https?://[^/]+",
        r"http://(\w+)\.example\.com",
        "see https://example.com",
        "mailto:ana@example.com",
        "urn:isbn:0451450523",
        "myapp://callback",
        "redis://",
        "sqlite:///app.db",
        "text/html",
        "1.2.3",
        "utf-8",
        "key=value",
        "host=db.example.com",  # one pair is not a connection string
        "http://www.w3.org/1999/xhtml",
    ],
)
def test_not_locations(text):
    assert classify(text) is None


@pytest.mark.parametrize(
    ("text", "kind", "host"),
    [
        ("https://forecast.example.com", Kind.URL, "forecast.example.com"),
        ("  http://localhost:8000/x  ", Kind.URL, "localhost"),
        ("http://[::1]:8000/", Kind.URL, "::1"),
        ("file:///data/in.csv", Kind.URL, ""),
        ("abfss://lake@acct.dfs.core.windows.net/x", Kind.URL, "acct.dfs.core.windows.net"),
        ("postgresql:///sales", Kind.CONNECTION, ""),
        ("postgresql+asyncpg://u:p@10.0.0.5/sales", Kind.CONNECTION, "10.0.0.5"),
        ("sqlite:///C:\\data\\app.db", Kind.CONNECTION, ""),
        ("amqp://guest:guest@rabbit.internal:5672//", Kind.CONNECTION, "rabbit.internal"),
    ],
)
def test_locations(text, kind, host):
    target = classify(text)
    assert target is not None
    assert (target.kind, target.host) == (kind, host)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://ana:s3cret@db.example.com/x", "postgresql://ana:***@db.example.com/x"),
        ("postgresql://ana@db.example.com/x", "postgresql://ana@db.example.com/x"),
        ("mysql://root:p@ss/w?rd@db.example.com/x", "mysql://root:***@db.example.com/x"),
        ("https://u:p@ss@example.com/x", "https://u:***@example.com/x"),
        ("https://example.com/x?token=abc&page=2", "https://example.com/x?token=***&page=2"),
        (
            "host=db.example.com password=hunter2 user=ana",
            "host=db.example.com password=*** user=ana",
        ),
        ("Server=db.example.com;PWD=x;UID=a", "Server=db.example.com;PWD=***;UID=a"),
    ],
)
def test_secrets_are_masked(text, shown):
    assert mask(text) == shown


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("db.example.com", True),
        ("db.example.com:5432", True),
        ("10.0.0.5", True),
        ("localhost", True),
        ("::1", True),
        ("[2001:db8::1]:8786", True),
        ("warehouse.internal", True),
        ("a.example.com:9092,b.example.com:9092", True),
        ("0.0.0.0", False),
        ("::", False),
        ("db", False),
        ("index.html", False),
        ("auth.login", False),
        ("main:app", False),
        ("{host}", False),
        ("db.example.com:http", False),
        ("a b.example.com", False),
    ],
)
def test_hosts(text, host):
    assert (as_host(text) is not None) is host


@pytest.mark.parametrize(
    ("text", "absolute", "file"),
    [
        ("/data/out", True, True),
        ("~/out", True, True),
        ("~", True, True),
        ("C:\\reports", True, True),
        ("D:/reports", True, True),
        ("\\\\server\\share\\x.csv", True, True),
        ("/reports/q3.csv", True, True),
        ("/health", True, False),
        ("/v1/forecast", True, False),
        ("/static/app.js", True, True),
        ("/", False, False),
        ("/dev/null", False, False),
        ("output/x.csv", False, False),
        ("~=1.2", False, False),
        ("\\\\?\\", False, False),
    ],
)
def test_paths(text, absolute, file):
    assert is_absolute_path(text) is absolute
    assert looks_like_file(text) is file
