"""Reports and jobs run again, through the real CLI against a real server: by hand and on a
one-minute schedule, paused in dev, a failed run leaving the previous output served, each kept
run's output at /<app>/_runs/<id>/, and who may run what."""

from __future__ import annotations

import shutil
import textwrap
import urllib.request
from pathlib import Path

import pytest

from .conftest import EXAMPLES
from .server import wait_for

pytestmark = pytest.mark.e2e

JOB = """\
import os, pathlib, sys
from conveyor import data

out = pathlib.Path(os.environ["CONVEYOR_RUN_OUTPUT"])
if data.output_path("fail-next").exists():
    print("the source data is not there yet", file=sys.stderr)
    sys.exit(3)
run = os.environ["CONVEYOR_RUN"]
(out / "index.html").write_text(f"refreshed by run {run} in {os.environ['CONVEYOR_ENV']}")
print(f"wrote run {run}")
"""


def make_job(root: Path) -> Path:
    app = root / "refresh"
    app.mkdir()
    (app / "conveyor.yml").write_text("name: refresh\ntype: job\nentrypoint: python job.py\n")
    (app / "job.py").write_text(textwrap.dedent(JOB))
    return app


def page(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def runs_of(server, app: str, environment: str) -> list[dict]:
    found = server.cli_json("runs", app, "--env", environment, "--json")
    assert isinstance(found, list)
    return found


def test_reports_and_jobs_run_by_hand_and_on_schedule(server, tmp_path):
    job = make_job(tmp_path)
    report = tmp_path / "quarterly-report"
    shutil.copytree(EXAMPLES / "quarterly-report", report)
    for environment in ("dev", "test"):
        assert server.cli("deploy", str(job), "--env", environment).code == 0
    assert server.cli("deploy", str(report), "--env", "test").code == 0

    # A job has served nothing before it ran; the release rendered the report once.
    assert "has not run yet" in page(server.app_url("test", "refresh"))[1]
    assert "Quarterly report" in page(server.app_url("test", "quarterly-report"))[1]

    # By hand: the log as it is written, then the output served at /<app>/ and /_runs/<id>/.
    ran = server.cli("run", "refresh", "--env", "test")
    assert ran.code == 0, ran
    assert "wrote run" in ran.out and "succeeded" in ran.out
    [first] = runs_of(server, "refresh", "test")
    assert first["state"] == "succeeded" and first["trigger"] == "manual"
    assert page(server.app_url("test", "refresh"))[1] == f"refreshed by run {first['id']} in test"
    kept = page(server.app_url("test", "refresh", f"/_runs/{first['id']}/"))[1]
    assert kept == f"refreshed by run {first['id']} in test"
    assert f'href="{first["id"]}/"' in page(server.app_url("test", "refresh", "/_runs/"))[1]

    # A failed run leaves the previous output served, and says why.
    data = server.home / "outputs" / "test" / "refresh"
    (data / "fail-next").write_text("")
    failed = server.cli("run", "refresh", "--env", "test")
    assert failed.code == 1 and "not there yet" in failed.out + failed.err, failed
    assert runs_of(server, "refresh", "test")[0]["state"] == "failed"
    status = server.cli("status", "refresh")
    assert "RUN-FAILED" in status.out and "previous output is still served" in status.err
    assert page(server.app_url("test", "refresh"))[1] == f"refreshed by run {first['id']} in test"
    (data / "fail-next").unlink()

    # On a one-minute schedule: dev's schedules are paused (shown, but nothing runs there);
    # test runs the job and the report on the next minute.
    for environment in ("dev", "test"):
        done = server.cli("schedule", "set", "refresh", "--env", environment, "* * * * *")
        assert done.code == 0, done
    done = server.cli(
        "schedule", "set", "quarterly-report", "--env", "test", "* * * * *", "--tz", "Europe/Berlin"
    )
    assert done.code == 0, done
    shown = {s["environment"]: s for s in server.cli_json("schedule", "show", "refresh", "--json")}
    assert shown["dev"]["active"] is False and shown["dev"]["cron"] == "* * * * *"
    assert shown["test"]["active"] is True and shown["test"]["next_run"]

    def scheduled(app: str) -> list[dict]:
        return [r for r in runs_of(server, app, "test") if r["trigger"] == "schedule"]

    wait_for(
        lambda: (
            any(r["state"] == "succeeded" for r in scheduled("refresh"))
            and any(r["state"] == "succeeded" for r in scheduled("quarterly-report"))
        ),
        "the scheduled runs",
        timeout=150,
    )
    assert not [r for r in runs_of(server, "refresh", "dev") if r["trigger"] == "schedule"]
    latest = scheduled("refresh")[0]
    assert page(server.app_url("test", "refresh"))[1] == f"refreshed by run {latest['id']} in test"
    rendered = scheduled("quarterly-report")[0]
    assert (
        "Quarterly report"
        in page(server.app_url("test", "quarterly-report", f"/_runs/{rendered['id']}/"))[1]
    )
    # A manual run works where schedules are paused.
    assert server.cli("run", "refresh", "--env", "dev").code == 0
    assert "in dev" in page(server.app_url("dev", "refresh"))[1]

    # Unset: the schedule is gone (the bundle declares none).
    assert server.cli("schedule", "unset", "refresh", "--env", "test").code == 0
    shown = {s["environment"]: s for s in server.cli_json("schedule", "show", "refresh", "--json")}
    assert shown["test"]["cron"] is None


def test_who_may_run_and_what_a_run_id_reveals(server, tmp_path):
    job = make_job(tmp_path)
    assert server.cli("deploy", str(job), "--env", "test").code == 0
    assert server.cli("run", "refresh", "--env", "test").code == 0
    [run] = runs_of(server, "refresh", "test")

    viewer = server.user("vera", "test:viewer", "dev:developer")
    for args in (
        ("run", "refresh", "--env", "test"),
        ("schedule", "set", "refresh", "--env", "test", "@daily"),
        ("schedule", "unset", "refresh", "--env", "test"),
    ):
        refused = server.cli(*args, token=viewer)
        assert refused.code == 4, (args, refused)
        assert "Traceback" not in refused.err
    # A viewer of test sees the runs; a run of test is not found through dev's permission.
    assert server.cli("runs", "refresh", "--env", "test", token=viewer).code == 0
    outsider = server.user("dora", "dev:developer")
    assert server.cli("runs", "refresh", "--env", "test", token=outsider).code == 4
    found = urllib.request.Request(
        f"{server.url}/api/v1/apps/refresh/environments/dev/runs/{run['id']}",
        headers={"Authorization": f"Bearer {outsider}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused_error:
        urllib.request.urlopen(found, timeout=30)
    assert refused_error.value.code == 404
    refused_error.value.close()

    # Bad input: a clear error, nothing saved.
    for cron, zone, says in (
        ("every morning", "UTC", "not a cron schedule"),
        ("0 6 * * *", "Mars/Olympus", "not a time zone"),
    ):
        bad = server.cli("schedule", "set", "refresh", "--env", "test", cron, "--tz", zone)
        assert bad.code != 0 and says in bad.err, bad
        assert "Traceback" not in bad.err
    shown = server.cli_json("schedule", "show", "refresh", "--json")
    assert all(s["cron"] is None for s in shown)
    # An app that does not exist: a clear error, no traceback.
    missing = server.cli("run", "refresh-missing", "--env", "test")
    assert missing.code != 0 and "refresh-missing" in missing.err
    assert "Traceback" not in missing.err


PROBE = """\
import os, pathlib

found = []
for path in pathlib.Path("targets.txt").read_text().split():
    try:
        target = pathlib.Path(path)
        if target.is_dir():
            found.append(f"LIST {path}: {' '.join(sorted(os.listdir(target)))}")
        else:
            target.read_bytes()
            found.append(f"READ {path}")
    except OSError:
        found.append(f"refused {path}")
out = pathlib.Path(os.environ["CONVEYOR_RUN_OUTPUT"])
(out / "index.html").write_text("\\n".join(found))
try:  # the pointer to what is served, beside this run's directory
    (out.parent / ".serving-1").write_text("1")
    found.append("WROTE the pointer")
except OSError:
    pass
(out / "index.html").write_text("\\n".join(found))
"""


def test_a_dev_job_reaches_no_other_environment_s_runs_nor_the_server(server, tmp_path):
    job = make_job(tmp_path)
    assert server.cli("deploy", str(job), "--env", "test").code == 0
    assert server.cli("run", "refresh", "--env", "test").code == 0
    [run] = runs_of(server, "refresh", "test")
    test_reports = server.home / "reports" / "test" / "refresh"
    assert (test_reports / str(run["id"]) / "index.html").exists()

    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "conveyor.yml").write_text("name: probe\ntype: job\nentrypoint: python probe.py\n")
    (probe / "probe.py").write_text(PROBE)
    targets = [
        test_reports / str(run["id"]) / "index.html",  # Test's output of another app
        test_reports,
        server.home / "reports" / "test",
        server.home / "conveyor.db",
    ]
    (probe / "targets.txt").write_text("\n".join(str(t) for t in [*targets, server.home]))
    assert server.cli("deploy", str(probe), "--env", "dev").code == 0
    ran = server.cli("run", "probe", "--env", "dev")
    assert ran.code == 0, ran
    seen = page(server.app_url("dev", "probe"))[1]
    assert seen.count("refused") == len(targets), seen
    assert "READ" not in seen and "WROTE" not in seen
    # The home it sees holds only the mount points of its own sandbox, none of the server's
    # files (the database, keys, credentials, other releases).
    [home] = [line for line in seen.splitlines() if line.startswith(f"LIST {server.home}:")]
    assert set(home.split(": ", 1)[1].split()) <= {"releases", "runtimes", "reports", "outputs"}
