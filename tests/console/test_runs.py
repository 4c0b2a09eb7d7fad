"""Runs of reports and jobs in the console, against odd input: a stream resumed with a
Last-Event-ID that is not a line id, a stream of a run that is not there (or not the app's and
environment's), an app whose live releases are of different types, a schedule that never
comes due, and the link to a run's output in an environment with host routing."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from conveyor.bundles.build import build_bundle
from conveyor.domain.schedules import Trigger
from conveyor.errors import ConveyorError
from conveyor.services import runs, schedules
from conveyor.services.bundles import register_bundle
from conveyor.services.pipeline import deploy, promote
from conveyor.storage import audit, catalog, operations, schema
from conveyor.storage.store import now

from .conftest import ORIGIN, csrf_of


def _job(console, version: str = "1", extra: str = "") -> str:
    root = console.tmp / f"src-nightly-{version}"
    root.mkdir()
    (root / "conveyor.yml").write_text(
        f"name: nightly\ntype: job\nentrypoint: python job.py\n{extra}"
    )
    (root / "job.py").write_text(f"print({version!r})\n")
    built = build_bundle(root, root / "bundle.tar.gz")
    return register_bundle(console.services, built.archive, built.provenance, "setup").bundle_id


def _finished_run(console, browser) -> str:
    """Run nightly in dev from its page; the run's path once it has ended."""
    page = browser.get("/apps/nightly").text
    started = browser.post(
        "/apps/nightly/environments/dev/run", data={"csrf": csrf_of(page)}, headers=ORIGIN
    )
    assert started.status_code == 200, started.text
    path = str(started.url.path)
    for _ in range(100):
        if "succeeded" in browser.get(path).text:
            return path
        time.sleep(0.05)
    raise AssertionError("the run did not end")


@pytest.mark.parametrize(
    "resumed",
    ["9" * 5000, "99999999999999999999999", str(2**31), "-1", "1.5", b"\xb2"],
    ids=["5000-digits", "past-64-bits", "past-max-id", "negative", "fraction", "superscript"],
)
def test_a_run_stream_resumed_from_an_odd_last_event_id_is_refused_not_a_crash(console, resumed):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    path = _finished_run(console, ana)
    answer = ana.get("/events" + path, headers={"Last-Event-ID": resumed})
    assert answer.status_code == 400 and "<html" in answer.text
    # A line id the server gave goes on after it.
    resumed_at_1 = ana.get("/events" + path, headers={"Last-Event-ID": "1"}).text
    assert "id: 1\n" not in resumed_at_1 and "id: 2\n" in resumed_at_1


@pytest.mark.parametrize("resumed", ["9" * 5000, b"\xb2", str(2**63)])
def test_an_operation_stream_resumed_from_an_odd_last_event_id_is_refused_not_a_crash(
    console, resumed
):
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    answer = ana.get("/events/operations/1", headers={"Last-Event-ID": resumed})
    assert answer.status_code == 400 and "<html" in answer.text
    # As the run's stream: an `after` out of bounds is refused before any database sees it.
    assert ana.get("/events/operations/1?after=99999999999999999999").status_code == 422


def test_the_stream_of_a_run_that_is_not_there_is_a_404_like_its_page(console):
    """Not an empty 200, after which a browser's EventSource connects again and again; and
    the same for a run of another environment or app as for one that does not exist."""
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    ana = console.user("ana", "dev:developer", "test:viewer")
    run_id = _finished_run(console, ana).rsplit("/", 1)[1]
    for path in (
        f"/apps/nightly/environments/test/runs/{run_id}",  # dev's run, asked as test's
        f"/apps/hello/environments/dev/runs/{run_id}",  # nightly's run, asked as hello's
        "/apps/nightly/environments/dev/runs/999999",  # none at all
    ):
        page = ana.get(path)
        events = ana.get("/events" + path)
        assert page.status_code == events.status_code == 404, path
        assert "event:" not in events.text


def test_runs_are_shown_where_the_live_release_is_a_job_though_the_newest_bundle_serves(console):
    """Prod still runs the job while dev moved on to a web app: prod's runs and Run now stay
    on the app's page; dev, serving requests, offers no Run now."""
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    promote(console.services, "nightly", "setup", to="prod")
    runs.run(console.services, "nightly", "prod", Trigger.MANUAL, "setup")
    deploy(console.services, "nightly", console.bundle("2", app="nightly"), "dev", "setup")
    page = console.user("root", admin=True).get("/apps/nightly").text
    assert 'id="runs"' in page
    assert "Run now in prod" in page and "/apps/nightly/environments/prod/runs/1" in page
    assert "Run now in dev" not in page


def test_run_now_is_offered_only_where_the_live_release_runs(console):
    """The newest bundle is a job, in dev only; prod serves requests: Run now there would
    only be refused."""
    deploy(console.services, "nightly", console.bundle("1", app="nightly"), "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    promote(console.services, "nightly", "setup", to="prod")
    deploy(console.services, "nightly", _job(console, "2"), "dev", "setup")
    page = console.user("root", admin=True).get("/apps/nightly").text
    assert "Run now in dev" in page
    assert "Run now in prod" not in page and "Run now in test" not in page


def test_a_schedule_that_never_comes_due_is_refused_in_conveyor_yml(console):
    """30 February passes croniter's syntax check but has no next run (nor a last one)."""
    with pytest.raises(ConveyorError, match="never comes due"):
        _job(console, extra="schedule: '0 6 30 2 *'\n")


def test_a_stored_schedule_that_never_comes_due_breaks_neither_the_page_nor_the_scheduler(
    console,
):
    """One stored before the check (or written into the database): the app's page says it
    never comes due, and the schedules of other apps still come due."""
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    with console.services.store.transaction() as connection:
        connection.execute(
            insert(schema.schedules).values(
                app="nightly",
                environment="test",
                cron="0 6 30 2 *",
                timezone="UTC",
                updated_by="ana",
                updated_at=now(),
                last_slot=None,
            )
        )
    page = console.user("root", admin=True).get("/apps/nightly")
    assert page.status_code == 200
    assert "<code>0 6 30 2 *</code> (UTC, set by ana), never comes due." in page.text
    schedules.due(console.services, datetime.now(UTC))  # no error: the others go on


def test_a_runs_output_is_linked_at_the_apps_own_host_where_the_environment_has_one(console):
    """With host routing the output is linked as run emails link it, at the app's own origin,
    not at the listener every app of the environment shares (nor an address only the
    server's machine reaches); without it, at the listener."""
    console.context.urls = {"dev": "http://127.0.0.1:8701", "test": "http://127.0.0.1:8702"}
    with console.services.store.transaction() as connection:
        dev = catalog.get_environment(connection, "dev")
        catalog.save_environments(connection, [dataclasses.replace(dev, domain="dev.example.com")])
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    root = console.user("root", admin=True)
    path = _finished_run(console, root)
    run_id = path.rsplit("/", 1)[1]
    page = root.get(path).text
    assert f'href="https://nightly.dev.example.com/nightly/_runs/{run_id}/"' in page
    assert "127.0.0.1:8701" not in page
    test_run = runs.run(console.services, "nightly", "test", Trigger.MANUAL, "setup")
    page = root.get(f"/apps/nightly/environments/test/runs/{test_run.id}").text
    assert f'href="http://127.0.0.1:8702/nightly/_runs/{test_run.id}/"' in page


def test_a_failed_run_links_no_output(console):
    """A failed run leaves the previous output served and has none of its own to link."""
    bundle = _job(console)
    deploy(console.services, "nightly", bundle, "dev", "setup")
    console.context.urls["dev"] = "http://127.0.0.1:8701"
    ana = console.user("ana", "dev:developer")
    path = _finished_run(console, ana)
    assert "Its output</a>" in ana.get(path).text
    console.services.runtime.failing_runs.add(bundle)
    page = ana.get("/apps/nightly").text
    started = ana.post(
        "/apps/nightly/environments/dev/run", data={"csrf": csrf_of(page)}, headers=ORIGIN
    )
    failed = str(started.url.path)
    for _ in range(100):
        shown = ana.get(failed).text
        if "failed" in shown:
            break
        time.sleep(0.05)
    assert "failed: run 2 failed (exit code 1)" in shown and "Its output" not in shown


LONG = 12_000  # more than a page of the API (5000 lines) and than a log page shows (1000)


def _long_log(console, table, owner: str, owner_id: int) -> None:
    with console.services.store.transaction() as connection:
        connection.execute(
            insert(table), [{owner: owner_id, "at": now(), "line": f"row {n}"} for n in range(LONG)]
        )


def _rows(text: str) -> list[str]:
    return re.findall(r"row \d+", text)


def test_a_long_run_log_shows_its_last_lines_and_links_the_whole_log(console):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    path = _finished_run(console, ana)
    _long_log(console, schema.run_log, "run", int(path.rsplit("/", 1)[1]))
    page = ana.get(path).text
    assert _rows(page) == [f"row {n}" for n in range(LONG - 1000, LONG)]
    whole = ana.get(path + "/log.txt")
    assert f"({len(whole.text.splitlines()) - 1000:,} earlier ones are not shown)" in page
    assert f'href="{path}/log.txt"' in page
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert [line.split("  ", 1)[1] for line in whole.text.splitlines()][-LONG:] == [
        f"row {n}" for n in range(LONG)
    ]
    # Followed from its start, the stream sends every line once (a page at a time), then ends.
    events = ana.get("/events" + path + "?after=0").text
    assert [line.removeprefix("data: ") for line in events.splitlines() if "data: row" in line] == [
        f"row {n}" for n in range(LONG)
    ]
    assert "event: done" in events
    # The whole log needs what its page needs.
    ben = console.user("ben", "test:viewer")
    assert ben.get(path + "/log.txt").status_code == 403


def test_a_long_operation_log_shows_its_last_lines_and_links_the_whole_log(console):
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    _long_log(console, schema.operation_log, "operation", 1)
    ana = console.user("ana", "dev:developer")
    page = ana.get("/operations/1").text
    assert _rows(page) == [f"row {n}" for n in range(LONG - 1000, LONG)]
    assert 'href="/operations/1/log.txt"' in page
    assert _rows(ana.get("/operations/1/log.txt").text) == [f"row {n}" for n in range(LONG)]
    assert ana.get("/operations/999/log.txt").status_code == 404


def test_a_short_log_is_shown_whole(console):
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    page = ana.get("/operations/1").text
    assert "earlier ones are not shown" not in page and 'data-keep="1000"' in page
    whole = ana.get("/operations/1/log.txt").text.splitlines()
    assert [line.split("  ", 1)[1] for line in whole] == [
        line for _, _, line in operations.log_lines(console.services.store.engine, 1)
    ]


def test_a_schedule_is_set_and_forgotten_from_the_apps_page(console):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    page = ana.get("/apps/nightly").text
    assert 'action="/apps/nightly/environments/dev/schedule"' in page
    form = {"csrf": csrf_of(page), "cron": "30 6 * * 1-5", "timezone": "Europe/Berlin"}
    done = ana.post("/apps/nightly/environments/dev/schedule", data=form, headers=ORIGIN)
    assert done.status_code == 200 and "nightly runs in dev on 30 6 * * 1-5" in done.text
    assert "<code>30 6 * * 1-5</code> (Europe/Berlin, set by ana)" in done.text
    with console.services.store.transaction() as connection:
        last = audit.events(connection)[-1]
    assert (last.actor, last.action, last.subject) == ("ana", "app.schedule", "nightly/dev")
    assert "Forget the schedule set in dev" in done.text
    forget = {"csrf": csrf_of(done.text), "unset": "1"}
    done = ana.post("/apps/nightly/environments/dev/schedule", data=forget, headers=ORIGIN)
    assert "The schedule set for nightly in dev is forgotten." in done.text
    assert "Schedule: none." in done.text and "Forget the schedule" not in done.text


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 6 30 2 *"}, "never comes due"),
        ({"cron": "0 6 * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_a_bad_schedule_is_refused_with_the_reason_and_changes_nothing(console, form, says):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    page = ana.get("/apps/nightly").text
    refused = ana.post(
        "/apps/nightly/environments/dev/schedule",
        data={"csrf": csrf_of(page), **form},
        headers=ORIGIN,
    )
    assert refused.status_code == 422 and says in refused.text
    assert "Schedule: none." in ana.get("/apps/nightly").text


def test_who_is_emailed_is_set_from_the_apps_page(console):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    page = ana.get("/apps/nightly").text
    form = {"csrf": csrf_of(page), "to": "ops@example.org, ana@example.org", "on": "always"}
    done = ana.post("/apps/nightly/environments/dev/email", data=form, headers=ORIGIN)
    assert done.status_code == 200
    assert "Email: ops@example.org, ana@example.org on always (set by ana)" in done.text
    bad = {"csrf": csrf_of(done.text), "to": "ops@", "on": "failure"}
    refused = ana.post("/apps/nightly/environments/dev/email", data=bad, headers=ORIGIN)
    assert refused.status_code == 422 and "ops@" in refused.text
    # An empty field is a slip, refused; no one is asked for with its own button.
    empty = {"csrf": csrf_of(done.text), "to": "", "on": "failure"}
    refused = ana.post("/apps/nightly/environments/dev/email", data=empty, headers=ORIGIN)
    assert refused.status_code == 422 and "no recipients" in refused.text
    nobody = {"csrf": csrf_of(done.text), "on": "failure", "nobody": "1"}
    done = ana.post("/apps/nightly/environments/dev/email", data=nobody, headers=ORIGIN)
    assert "no one on failure (set by ana)" in done.text
    for on in ("always", "failure"):
        forget = {"csrf": csrf_of(done.text), "on": on, "unset": "1"}
        done = ana.post("/apps/nightly/environments/dev/email", data=forget, headers=ORIGIN)
    assert "Email: no one." in done.text and "Forget the email set in dev" not in done.text
    # Nothing left to forget: as the API, a 404 with the reason.
    again = ana.post("/apps/nightly/environments/dev/email", data=forget, headers=ORIGIN)
    assert again.status_code == 404 and "has no email set" in again.text


def test_only_those_who_may_run_there_set_its_schedule_or_email(console):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    vera = console.user("vera", "dev:viewer")
    page = vera.get("/apps/nightly").text
    assert "/schedule" not in page and "/email" not in page
    for path, form in (
        ("/apps/nightly/environments/dev/schedule", {"cron": "0 6 * * *"}),
        ("/apps/nightly/environments/dev/email", {"to": "vera@example.org"}),
    ):
        answer = vera.post(path, data={"csrf": csrf_of(page), **form}, headers=ORIGIN)
        assert answer.status_code == 403, path
    assert "Schedule: none." in vera.get("/apps/nightly").text


def test_what_an_app_prints_is_text_in_its_whole_log_never_a_console_page(console):
    """A run's log is the app's own output: served as the whole log it stays plain text the
    browser may not sniff into HTML (on the console's origin it could act as the signed-in
    user), and on its page it is escaped."""
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    ana = console.user("ana", "dev:developer")
    path = _finished_run(console, ana)
    hostile = "<script>fetch('/admin/users')</script>"
    with console.services.store.transaction() as connection:
        connection.execute(
            insert(schema.run_log),
            [{"run": int(path.rsplit("/", 1)[1]), "at": now(), "line": hostile}],
        )
    whole = ana.get(path + "/log.txt")
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in whole.headers["content-security-policy"]
    page = ana.get(path).text
    assert hostile not in page and "&lt;script&gt;" in page


def test_an_operations_whole_log_needs_a_view_of_its_environment(console):
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    tess = console.user("tess", "test:developer")  # may see test, not dev
    assert tess.get("/operations/1/log.txt").status_code == 403
    assert tess.get("/operations/1").status_code == 403


def test_roles_in_another_environment_set_no_schedule_or_email_here(console):
    deploy(console.services, "nightly", _job(console), "dev", "setup")
    tess = console.user("tess", "test:developer")  # may run in test, not in dev
    page = tess.get("/").text
    for path, form in (
        ("/apps/nightly/environments/dev/schedule", {"cron": "0 6 * * *"}),
        ("/apps/nightly/environments/dev/email", {"to": "tess@example.org"}),
    ):
        answer = tess.post(path, data={"csrf": csrf_of(page), **form}, headers=ORIGIN)
        assert answer.status_code == 403, path
    with console.services.store.transaction() as connection:
        actions = [e.action for e in audit.events(connection)]
    assert "app.schedule" not in actions and "app.email" not in actions
