"""Who is emailed about a run, and the email itself: addresses are checked (no header can be
smuggled in), rules say when each list hears, and the message says what a reader needs."""

from __future__ import annotations

import email
import email.policy

import pytest

from conveyor.domain.run_email import (
    EmailRule,
    When,
    parse_address,
    parse_recipients,
    parse_rules,
    recipients_for,
    rules_json,
)
from conveyor.domain.run_message import Attachment, RunReport, build_message, subject_of
from conveyor.domain.schedules import Run, RunState, Trigger
from conveyor.errors import InvalidInput


def test_addresses_are_plain_and_checked():
    assert parse_address(" ana@example.com ") == "ana@example.com"
    assert parse_recipients("ana@example.com, bo@example.org,ANA@example.com") == (
        "ana@example.com",
        "bo@example.org",
    )
    for bad, says in (
        ("ana@example.com\r\nBcc: eve@evil.example", "line break"),
        ("ana@example.com\nX: y", "line break"),
        ("Ana <ana@example.com>", "plain email address"),
        ("ana", "not an email address"),
        ("ana@localhost", "not an email address"),
        ("ana@@example.com", "not an email address"),
        ("anä@example.com", "not an email address"),
    ):
        with pytest.raises(InvalidInput, match=says):
            parse_address(bad)
    with pytest.raises(InvalidInput, match="at least one"):
        parse_recipients(" , ")
    with pytest.raises(InvalidInput, match="at most"):
        parse_recipients([f"r{i}@example.com" for i in range(51)])


def test_rules_say_who_hears_of_which_result():
    rules = parse_rules(
        [
            {"to": ["team@example.com"], "on": "failure"},
            {"to": "readers@example.com,team@example.com", "on": "success"},
            {"to": ["lead@example.com"], "on": "always"},
        ]
    )
    assert recipients_for(rules, RunState.FAILED) == ("team@example.com", "lead@example.com")
    assert recipients_for(rules, RunState.SUCCEEDED) == (
        "readers@example.com",
        "team@example.com",
        "lead@example.com",
    )
    assert recipients_for(rules, RunState.INTERRUPTED) == ()
    assert parse_rules({"to": ["team@example.com"]}) == (EmailRule(("team@example.com",)),)
    # A later rule for the same `on` replaces the earlier one; JSON round-trips.
    twice = parse_rules([{"to": "a@example.com"}, {"to": "b@example.com", "on": "failure"}])
    assert twice == (EmailRule(("b@example.com",), When.FAILURE),)
    assert parse_rules(rules_json(rules)) == rules
    for bad, says in (
        ({"to": ["a@example.com"], "on": "sometimes"}, "not when to email"),
        ({"to": ["a@example.com"], "cc": ["b@example.com"]}, "unknown field 'cc'"),
        ({"on": "failure"}, "needs `to`"),
        ("a@example.com", "an email rule is"),
        ({"to": 3}, "list of addresses"),
    ):
        with pytest.raises(InvalidInput, match=says):
            parse_rules(bad)


def _run(state: RunState, detail: str = "", app: str = "refresh") -> Run:
    return Run(
        id=12,
        app=app,
        environment="prod",
        release_id=31,
        trigger=Trigger.SCHEDULE,
        actor="schedule",
        state=state,
        started_at="2026-11-30T06:00:04.000001+00:00",
        ended_at="2026-11-30T06:01:10.000001+00:00",
        detail=detail,
    )


def _parsed(message):
    return email.message_from_bytes(bytes(message), policy=email.policy.default)


def test_a_success_mail_links_the_output_and_attaches_the_page():
    report = RunReport(
        _run(RunState.SUCCEEDED),
        "http://127.0.0.1:8703/refresh",
        ["wrote run 12"],
        Attachment("refresh-run-12.html", b"<p>refreshed</p>"),
    )
    message = _parsed(
        build_message(report, "conveyor@example.com", ["a@example.com", "b@example.com"])
    )
    assert message["Subject"] == "[Conveyor] refresh in prod: run 12 succeeded"
    assert message["From"] == "conveyor@example.com"
    assert message["To"] == "a@example.com, b@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_body(("plain",)).get_content()
    assert "Started:  2026-11-30 06:00:04 UTC" in body
    assert "Ended:    2026-11-30 06:01:10 UTC" in body
    assert "http://127.0.0.1:8703/refresh/_runs/12/" in body
    assert "last lines of its log" not in body
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "refresh-run-12.html"
    assert attached.get_content_type() == "text/html"
    assert attached.get_content() == "<p>refreshed</p>"


def test_a_failure_mail_shows_the_log_s_last_lines_and_the_commands():
    tail = [f"line {i}" for i in range(30)] + ["x" * 1000]
    report = RunReport(
        _run(RunState.FAILED, "job.py failed (exit code 3)"), "http://h:1/refresh", tail
    )
    message = _parsed(build_message(report, "conveyor@example.com", ["team@example.com"]))
    assert message["Subject"] == "[Conveyor] refresh in prod: run 12 FAILED"
    body = message.get_body(("plain",)).get_content()
    assert "Result:   failed: job.py failed (exit code 3)" in body
    assert "previous output is still served at http://h:1/refresh/" in body
    assert "line 29" in body and "line 10" not in body  # the last 20 lines only
    assert "x" * 299 in body and "x" * 301 not in body  # long lines cut
    assert "conveyor runs refresh --env prod --log 12" in body
    assert not list(message.iter_attachments())
    assert subject_of(_run(RunState.INTERRUPTED)).endswith("run 12 INTERRUPTED")


def test_a_line_break_in_a_header_value_is_refused():
    report = RunReport(_run(RunState.FAILED, app="refresh\r\nBcc: eve@evil.example"), None)
    with pytest.raises(InvalidInput, match="line break"):
        build_message(report, "conveyor@example.com", ["team@example.com"])
    good = RunReport(_run(RunState.FAILED), None)
    with pytest.raises(InvalidInput, match="line break"):
        build_message(good, "conveyor@example.com", ["team@example.com\nBcc: eve@evil.example"])
    with pytest.raises(InvalidInput, match="line break"):
        build_message(good, "conveyor@example.com\r\nBcc: e@evil.example", ["t@example.com"])
