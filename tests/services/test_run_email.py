"""Who is emailed about runs per environment, over a real store (SQLite and PostgreSQL), and
the mailer: the bundle's `email:` applies only where schedules are active, rules set per
environment win one `on` at a time, a failure to send lands in the run's log and never changes
the run's result, a page the run left as a link is not followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.bundles.build import build_bundle
from conveyor.domain.run_email import EmailRule, When
from conveyor.domain.schedules import RunState, Trigger
from conveyor.errors import InvalidInput, NotFound
from conveyor.services import pipeline, run_email, run_mailer, runs
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services
from conveyor.services.smtp import SendFailure, smtp_settings
from conveyor.storage import runs as run_records

EMAIL = "email: {to: [team@example.com], on: failure}\n"


@pytest.fixture
def job(services, tmp_path: Path):
    """Deploy job `refresh` (conveyor.yml emails the team on failure) to an environment."""

    def _deploy(environment: str, extra: str = EMAIL) -> str:
        root = tmp_path / f"job-{environment}-{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        (root / "conveyor.yml").write_text(
            f"name: refresh\ntype: job\nentrypoint: python job.py\n{extra}"
        )
        (root / "job.py").write_text("print('hi')\n")
        built = build_bundle(root, root / "bundle.tar.gz")
        bundle = register_bundle(services, built.archive, built.provenance, "ana").bundle_id
        pipeline.deploy(services, "refresh", bundle, environment, "ana")
        return bundle

    return _deploy


def _table(services, *environments):
    return {s.environment: s for s in run_email.email_table(services, "refresh", environments)}


def test_the_bundle_s_rules_apply_where_schedules_are_active(services, job):
    job("dev")
    job("test")
    table = _table(services, "dev", "test")
    assert [(r.rule.to, r.source) for r in table["test"].rules] == [
        (("team@example.com",), "conveyor.yml")
    ]
    assert table["dev"].rules == () and table["dev"].quiet[0].to == ("team@example.com",)

    # Set in an environment: it replaces the bundle's rule for the same `on` only.
    readers = EmailRule(("readers@example.com",), When.SUCCESS)
    run_email.set_rule(services, "refresh", "test", readers, "ana")
    oncall = EmailRule(("oncall@example.com",), When.FAILURE)
    run_email.set_rule(services, "refresh", "test", oncall, "bo")
    rules = {r.rule.on: (r.rule.to, r.source) for r in _table(services, "test")["test"].rules}
    assert rules == {
        When.SUCCESS: (("readers@example.com",), "set by ana"),
        When.FAILURE: (("oncall@example.com",), "set by bo"),
    }
    # No one (an empty list) silences the bundle's rule there; unset brings it back.
    run_email.set_rule(services, "refresh", "test", EmailRule((), When.FAILURE), "ana")
    with services.store.transaction() as connection:
        found = run_email.rules_for(connection, "refresh", "test")
    assert {r.on: r.to for r in found} == {When.SUCCESS: ("readers@example.com",), When.FAILURE: ()}
    run_email.unset_rules(services, "refresh", "test", When.FAILURE, "ana")
    run_email.unset_rules(services, "refresh", "test", None, "ana")
    assert [r.source for r in _table(services, "test")["test"].rules] == ["conveyor.yml"]
    with pytest.raises(NotFound, match="no email set"):
        run_email.unset_rules(services, "refresh", "test", None, "ana")
    # Dev hears only of what is set there.
    run_email.set_rule(services, "refresh", "dev", EmailRule(("me@example.com",)), "ana")
    assert [r.source for r in _table(services, "dev")["dev"].rules] == ["set by ana"]


def test_rules_are_for_runnable_apps_that_exist(services, upload, job):
    with pytest.raises(NotFound):
        run_email.set_rule(services, "nope", "dev", EmailRule(("a@example.com",)), "ana")
    bundle = upload("1")
    pipeline.deploy(services, "hello", bundle, "dev", "ana")
    with pytest.raises(InvalidInput, match="serves requests"):
        run_email.set_rule(services, "hello", "dev", EmailRule(("a@example.com",)), "ana")


class Outbox:
    def __init__(self, failing: str = "") -> None:
        self.sent: list = []
        self.failing = failing

    def __call__(self, settings, message) -> None:
        if self.failing:
            raise SendFailure(self.failing)
        self.sent.append(message)


SMTP = smtp_settings("127.0.0.1", "conveyor@example.com", port=2525, security="none")


def _mailer(services, outbox, smtp=SMTP):
    return run_mailer.RunMailer(
        services.store,
        services.runtime,
        smtp,
        {"test": "http://127.0.0.1:8702"},
        submit=lambda work: work(lambda run_id: None),  # at once, for the test
        deliver=outbox,
    )


def _log(services, run_id: int) -> str:
    return "\n".join(line for _, _, line in run_records.log_lines(services.store.engine, run_id))


def test_a_run_that_ends_is_mailed_after_its_result_is_recorded(services, runtime, job, tmp_path):
    bundle = job("test", "email: {to: [team@example.com], on: always}\n")
    outbox = Outbox()
    mailer = _mailer(services, outbox)
    seen: list[RunState] = []

    def ended(run):
        # The result is in the database before anyone is mailed.
        seen.append(run_records.get_run(services.store.engine, run.id).state)
        mailer.run_ended(run)

    wired = Services(services.store, runtime, run_ended=ended)
    page = tmp_path / "index.html"
    page.write_text("<h1>refreshed</h1>")
    runtime.run_pages[("test", "refresh", 1)] = page
    done = runs.run(wired, "refresh", "test", Trigger.MANUAL, "ana")
    assert seen == [RunState.SUCCEEDED]
    [message] = outbox.sent
    assert message["To"] == "team@example.com"
    [attached] = list(message.iter_attachments())
    assert attached.get_content() == "<h1>refreshed</h1>"
    assert "emailed how the run ended to team@example.com" in _log(services, done.id)

    # Sending fails: the run stays failed for its own reason, the log says why mail failed.
    runtime.failing_runs.add(bundle)
    outbox.failing = "the SMTP server answered 554 no thanks"
    failed = runs.run(wired, "refresh", "test", Trigger.MANUAL, "ana")
    assert failed.state is RunState.FAILED and "exit code 1" in failed.detail
    assert "emailing team@example.com failed: the SMTP server answered 554" in _log(
        services, failed.id
    )


def test_a_linked_or_too_large_page_is_not_attached(services, runtime, job, tmp_path):
    job("test", "email: {to: [team@example.com], on: success}\n")
    outbox = Outbox()
    mailer = _mailer(services, outbox)
    secret = tmp_path / "keys.json"
    secret.write_text("server secret")
    link = tmp_path / "link.html"
    link.symlink_to(secret)
    runtime.run_pages[("test", "refresh", 1)] = link
    mailer.notify(runs.run(services, "refresh", "test", Trigger.MANUAL, "ana"))
    big = tmp_path / "big.html"
    big.write_bytes(b"x" * (SMTP.attachment_limit + 1))
    runtime.run_pages[("test", "refresh", 2)] = big
    mailer.notify(runs.run(services, "refresh", "test", Trigger.MANUAL, "ana"))
    first, second = outbox.sent
    for message in (first, second):
        assert not list(message.iter_attachments())
        assert "server secret" not in message.as_string()
    assert "symbolic link" in first.get_body(("plain",)).get_content()
    assert "larger than the 10 MiB" in second.get_body(("plain",)).get_content()


def test_without_an_smtp_server_the_run_log_says_no_one_was_mailed(services, job):
    job("test")
    job("dev")
    outbox = Outbox()
    mailer = _mailer(services, outbox, smtp=None)
    failing = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    # The in-memory runtime's run succeeds: pretend it failed for the rule to apply.
    failed = failing.__class__(**{**failing.__dict__, "state": RunState.FAILED})
    assert mailer.notify(failed) == ()
    assert "no SMTP server configured" in _log(services, failed.id)
    # Dev is quiet: the bundle's rule does not apply there, nothing is said or sent.
    mailer = _mailer(services, outbox)
    quiet = runs.run(services, "refresh", "dev", Trigger.MANUAL, "ana")
    quiet = quiet.__class__(**{**quiet.__dict__, "state": RunState.FAILED})
    assert mailer.notify(quiet) == () and outbox.sent == []
    assert "email" not in _log(services, quiet.id)


def test_smtp_settings_are_checked_and_keep_the_password_out_of_sight():
    settings = smtp_settings(
        "smtp.example.com", "conveyor@example.com", username="conveyor", password="hunter2"
    )
    assert settings.port == 587 and "hunter2" not in repr(settings) + settings.describe()
    assert smtp_settings("smtp.example.com", "c@example.com", security="tls").port == 465
    for kwargs, says in (
        ({"sender": None}, "--smtp-from"),
        ({"sender": "c@example.com\r\nBcc: e@evil.example"}, "line break"),
        ({"security": "ssl"}, "--smtp-security"),
        ({"username": "conveyor"}, "CONVEYOR_SMTP_PASSWORD"),
        ({"username": "c", "password": "p", "security": "none"}, "clear text"),
        ({"port": 70000}, "not a port"),
    ):
        arguments = {"sender": "c@example.com", **kwargs}
        with pytest.raises(InvalidInput, match=says):
            smtp_settings("smtp.example.com", **arguments)


def test_the_rules_of_the_bundle_that_ran_apply_not_the_live_one_s(services, job):
    job("test", "email: {to: [old@example.com], on: always}\n")
    ran = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    job("test", "email: {to: [new@example.com], on: always}\n")  # deployed after the run
    outbox = Outbox()
    assert _mailer(services, outbox).notify(ran) == ("old@example.com",)


def _failed(run):
    return run.__class__(**{**run.__dict__, "state": RunState.FAILED, "detail": "exit code 1"})


def test_a_failure_mail_reads_only_the_tail_of_the_log(services, job, monkeypatch):
    job("test", "email: {to: [team@example.com], on: always}\n")
    ran = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    for number in range(1, 31):
        run_records.append_log(services.store.engine, ran.id, f"step {number}")

    def whole_log(*args, **kwargs):
        raise AssertionError("the whole log was read")

    monkeypatch.setattr(run_records, "log_lines", whole_log)
    outbox = Outbox()
    _mailer(services, outbox).notify(_failed(ran))
    [message] = outbox.sent
    body = message.get_body(("plain",)).get_content()
    assert "  step 30" in body and "  step 11\n" in body and "  step 10\n" not in body


def test_a_run_that_wrote_no_output_gets_no_link_to_it(services, job, tmp_path):
    job("test", "email: {to: [team@example.com], on: success}\n")
    reports = tmp_path / "reports"
    outbox = Outbox()
    mailer = run_mailer.RunMailer(
        services.store,
        services.runtime,
        SMTP,
        {"test": "http://127.0.0.1:8702"},
        submit=lambda work: work(lambda run_id: None),
        deliver=outbox,
        reports=reports,
    )
    nothing = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    (reports / "test" / "refresh" / str(nothing.id)).mkdir(parents=True)  # left empty
    mailer.notify(nothing)
    wrote = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    (reports / "test" / "refresh" / str(wrote.id)).mkdir(parents=True)
    (reports / "test" / "refresh" / str(wrote.id) / "scores.csv").write_text("a,1\n")
    mailer.notify(wrote)
    first, second = (m.get_body(("plain",)).get_content() for m in outbox.sent)
    assert "/_runs/" not in first and "It wrote no output." in first
    assert f"http://127.0.0.1:8702/refresh/_runs/{wrote.id}/" in second


def test_links_use_the_app_s_own_host_when_the_environment_has_a_domain(services, job):
    from dataclasses import replace

    from conveyor.storage import catalog

    job("test", "email: {to: [team@example.com], on: always}\n")
    with services.store.transaction() as connection:
        test = catalog.get_environment(connection, "test")
        catalog.save_environments(connection, [replace(test, domain="test.example.com")])
    ran = runs.run(services, "refresh", "test", Trigger.MANUAL, "ana")
    outbox = Outbox()
    _mailer(services, outbox).notify(_failed(ran))
    body = outbox.sent[0].get_body(("plain",)).get_content()
    assert "served at https://refresh.test.example.com/refresh/" in body
    assert "127.0.0.1" not in body
