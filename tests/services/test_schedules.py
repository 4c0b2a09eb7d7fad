"""Schedules and runs over a real store (SQLite and PostgreSQL) with the in-memory runtime: a
slot fires once, after downtime only the latest missed slot runs, paused environments pass
their slots, a run still going is not started twice, and failures are recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.bundles.build import build_bundle
from conveyor.domain.schedules import RunState, Trigger, parse_duration, parse_schedule
from conveyor.errors import InvalidInput, OperationInProgress
from conveyor.services import pipeline, runs, schedules
from conveyor.services.bundles import register_bundle
from conveyor.services.scheduler import Scheduler
from conveyor.storage import runs as run_records


@pytest.fixture
def report(services, tmp_path: Path):
    """Deploy a notebook report whose conveyor.yml runs it at 06:00 Berlin time on weekdays."""

    def _deploy(environment: str, schedule: str = "") -> str:
        root = tmp_path / f"report-{environment}"
        root.mkdir()
        (root / "conveyor.yml").write_text(
            f"name: report\ntype: notebook\nentrypoint: report.ipynb\n{schedule}"
        )
        (root / "report.ipynb").write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5}')
        built = build_bundle(root, root / "bundle.tar.gz")
        bundle = register_bundle(services, built.archive, built.provenance, "ana").bundle_id
        pipeline.deploy(services, "report", bundle, environment, "ana")
        return bundle

    return _deploy


def test_a_cron_schedule_in_a_time_zone():
    berlin = parse_schedule("0 6 * * 1-5", "Europe/Berlin")
    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert berlin.latest_slot(monday_noon) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert berlin.next_slot(monday_noon) == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    exactly = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert berlin.latest_slot(exactly) == exactly
    for cron, zone in (("every day", "UTC"), ("0 6 * * * *", "UTC"), ("0 6 * * *", "Nowhere/X")):
        with pytest.raises(InvalidInput):
            parse_schedule(cron, zone)
    assert parse_duration("30m", "timeout") == 1800 and parse_duration(90, "timeout") == 90
    with pytest.raises(InvalidInput):
        parse_duration("soon", "timeout")


def test_a_slot_runs_once_and_downtime_runs_the_latest_slot_once(services, report):
    report("test", 'schedule: {cron: "0 6 * * *", timezone: Europe/Berlin}\n')
    source = schedules.schedule_of(services, "report", "test")
    assert source[0] is not None and source[0].cron == "0 6 * * *" and source[1] == "conveyor.yml"
    day = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    assert schedules.due(services, day) == []  # first seen: from the next slot on
    first = schedules.due(services, day + timedelta(hours=1, minutes=1))
    assert [(d.app, d.environment) for d in first] == [("report", "test")]
    assert schedules.due(services, day + timedelta(hours=2)) == []  # that slot is handled
    # Three days down: one run for the latest slot, not three.
    later = schedules.due(services, day + timedelta(days=3, hours=2))
    assert len(later) == 1 and later[0].slot.startswith("2026-12-03T05:00")


def test_paused_environments_pass_their_slots_and_set_schedules_win(services, report):
    report("dev", 'schedule: "*/5 * * * *"\n')
    moment = datetime(2026, 11, 30, 10, 1, tzinfo=UTC)
    schedules.due(services, moment)
    assert schedules.due(services, moment + timedelta(minutes=10)) == []  # dev is paused
    schedules.set_schedule(services, "report", "dev", parse_schedule("@hourly"), "ana")
    table = {s.environment: s for s in schedules.schedule_table(services, "report", ["dev"])}
    assert table["dev"].source == "set by ana" and not table["dev"].active
    assert table["dev"].next_run is None
    schedules.unset_schedule(services, "report", "dev", "ana")
    assert schedules.schedule_of(services, "report", "dev")[1] == "conveyor.yml"


def test_runs_are_recorded_and_a_running_one_is_not_started_twice(services, runtime, report):
    bundle = report("test")
    done = runs.run(services, "report", "test", Trigger.MANUAL, "ana")
    assert done.state is RunState.SUCCEEDED and runtime.runs
    runtime.failing_runs.add(bundle)
    failed = runs.run(services, "report", "test", Trigger.SCHEDULE, "schedule")
    assert failed.state is RunState.FAILED and "exit code 1" in failed.detail
    with services.store.transaction() as connection:
        assert runs.last_failed(connection, "report", "test") == failed
    lines = [line for _, _, line in run_records.log_lines(services.store.engine, failed.id)]
    assert lines[0].startswith(f"run {failed.id} of report in test") and "failed" in lines[-1]

    engine = services.store.engine
    holding = run_records.start_run(engine, "report", "test", done.release_id, Trigger.MANUAL, "x")
    with pytest.raises(OperationInProgress, match="still running"):
        runs.run(services, "report", "test", Trigger.SCHEDULE, "schedule")
    # The scheduler says so and goes on; the slot is handled.
    schedules.set_schedule(services, "report", "test", parse_schedule("* * * * *"), "ana")
    said: list[str] = []

    def submit(work):
        return work(lambda run_id: None)

    scheduler = Scheduler(services, submit, say=said.append)
    due = scheduler.tick(datetime.now(UTC) + timedelta(minutes=2))
    assert len(due) == 1 and "still running" in said[0]
    assert [r.id for r in run_records.interrupt_running(engine)] == [holding.id]


def test_web_apps_have_nothing_to_run(services, upload):
    bundle = upload("1")
    pipeline.deploy(services, "hello", bundle, "dev", "ana")
    with pytest.raises(InvalidInput, match="nothing to run"):
        runs.run(services, "hello", "dev", Trigger.MANUAL, "ana")
    with pytest.raises(InvalidInput, match="does not run on a"):
        schedules.set_schedule(services, "hello", "dev", parse_schedule("@daily"), "ana")
