"""What a hostile colleague, a hostile app's page or someone with only the database tries
against the console, each refused: text that would start a server-sent event of its own,
live streams that outlive a disabled user, framing, words put in the console's mouth, links
that send a person to an app after signing in, password hashes and sessions written into the
database by hand, and input that used to be a 500."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from sqlalchemy import update

from conveyor.bundles.app_file import parse_app_spec
from conveyor.console.live import event as _event
from conveyor.errors import ManifestError
from conveyor.services import sign_in
from conveyor.storage import schema

from .conftest import ORIGIN, PASSWORD, csrf_of


def test_no_text_can_start_an_event_of_its_own():
    """A browser ends an SSE line at CR, LF or CRLF: each is a new data line, never a new
    field (an injected `event: replace` would put HTML into the page)."""
    sent = _event("append", "tests: pytest\revent: replace\rdata: <img src=x>\r\nend\nlast", 7)
    lines = sent.split("\n")
    assert lines[:2] == ["id: 7", "event: append"]
    assert all(line.startswith("data: ") for line in lines[2:-2]), lines
    assert "\r" not in sent and sent.endswith("\n\n")


def test_a_manifest_field_with_a_control_character_is_refused(tmp_path):
    data = {"name": "hello", "type": "command", "entrypoint": "python serve.py"}
    data["checks"] = {"tests": "pytest\revent: replace\rdata: <img src=x onerror=alert(1)>"}
    with pytest.raises(ManifestError, match=r"`checks.tests` holds a control character"):
        parse_app_spec(data, tmp_path / "conveyor.yml", tmp_path)
    data["checks"] = {"tests": "pytest -q\n\tpytest -k slow"}  # newlines and tabs are fine
    parse_app_spec(data, tmp_path / "conveyor.yml", tmp_path)


def test_a_live_stream_ends_when_its_user_is_disabled(console):
    eve = console.user("eve", "dev:developer")
    root = console.user("root", admin=True)
    token = csrf_of(root.get("/admin/users").text)
    with eve.stream("GET", "/events/board") as events:
        lines = events.iter_lines()
        assert next(lines) == "event: replace"
        answer = root.post("/admin/users/eve/disable", data={"csrf": token}, headers=ORIGIN)
        assert answer.status_code == 200
        rest = list(lines)  # the stream ends by itself at its next look
    assert not any("event: replace" in line for line in rest)


def test_console_pages_refuse_to_be_framed_and_run_only_their_own_scripts(console):
    browser = console.user("ana", "dev:developer")
    for path in ("/", "/signin", "/static/console.js"):
        answer = browser.get(path)
        assert answer.headers["X-Frame-Options"] == "DENY", path
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy


def test_a_notice_is_shown_only_when_the_console_wrote_it(console):
    browser = console.user("ana", "dev:developer")
    forged = browser.get("/?notice=" + urllib.parse.quote("Session expired: sign in at evil"))
    assert "Session expired" not in forged.text
    root = console.user("root", admin=True)
    token = csrf_of(root.get("/admin/users").text)
    added = root.post("/admin/users", data={"name": "bob", "csrf": token}, headers=ORIGIN)
    assert "Added bob." in added.text  # followed the console's own, sealed, redirect


def test_after_signing_in_only_the_proxys_own_links_lead_to_an_app(console):
    """The gate sends a visitor to sign in with the app's address sealed; a link someone
    else made to an app address leads to the board instead."""
    app_url = "http://127.0.0.1:8701/hello/"
    console.context.is_app_address = lambda url: url.startswith("http://127.0.0.1:8701/")
    console.user("ana", "dev:developer")

    def lands(query: dict[str, str]) -> str:
        browser = console.browser()
        page = browser.get("/signin?" + urllib.parse.urlencode(query)).text
        form = dict(re.findall(r'name="(next|seal)" value="([^"]*)"', page))
        answer = browser.post(
            "/signin",
            data={"username": "ana", "password": PASSWORD, **form},
            headers=ORIGIN,
            follow_redirects=False,
        )
        return str(answer.headers["location"])

    assert lands({"next": app_url}) == "/"
    assert lands({"next": app_url, "seal": "forged"}) == "/"
    sealed = sign_in.seal_next(console.services, app_url)
    assert lands({"next": app_url, "seal": sealed}) == app_url
    assert lands({"next": "/apps/hello"}) == "/apps/hello"


def test_a_password_hash_written_into_the_database_signs_nobody_in(console):
    """Someone who can write the database but has no keys file: a hash of a password they
    know, set on the admin's row, does not work."""
    console.user("root", admin=True)
    known = sign_in._HASHER.hash("known by mallory")
    with console.services.store.transaction() as connection:
        connection.execute(
            update(schema.users).where(schema.users.c.name == "root").values(password_hash=known)
        )
    browser = console.browser()
    answer = browser.post(
        "/signin",
        data={"username": "root", "password": "known by mallory"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 401


def test_a_session_moved_to_another_user_in_the_database_stops_working(console):
    console.user("root", admin=True)
    mallory = console.user("mallory", "dev:viewer")
    with console.services.store.transaction() as connection:
        connection.execute(
            update(schema.sessions).where(schema.sessions.c.user == "mallory").values(user="root")
        )
    answer = mallory.get("/admin/users", follow_redirects=False)
    assert answer.status_code == 303 and "/signin" in answer.headers["location"]


@pytest.mark.parametrize("token", ["ü-not-ascii", "x" * 5000])
def test_odd_input_is_a_refusal_not_a_crash(console, token):
    browser = console.user("root", admin=True)
    answer = browser.post("/admin/users", data={"name": "bob", "csrf": token}, headers=ORIGIN)
    assert answer.status_code == 403
    long_name = browser.post(
        "/signin", data={"username": "u" * 500, "password": "whatever"}, headers=ORIGIN
    )
    assert long_name.status_code == 401
    missing = browser.get("/operations/999999")
    assert missing.status_code == 404 and "<html" in missing.text
