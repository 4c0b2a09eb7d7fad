"""Apps that sleep when idle, through a real server and the real CLI: after `sleep_after`
without requests a release's processes are gone and `conveyor status` says sleeping; the next
HTTP request or WebSocket (Shiny) wakes the same release from its runtime, with no checks and
no audit event; an app that cannot start again is explained, not a bare 502, and wakes once
it can."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from conveyor.runtime.process_records import ProcessRecords

from .browser import chromium, needs_chromium  # noqa: F401 (fixture)
from .conftest import EXAMPLES
from .server import Server, wait_for

pytestmark = pytest.mark.e2e

#: Dev sleeps after 3 s idle; test keeps its default (15 minutes): nothing sleeps there here.
ENVIRONMENTS = (
    "environments:\n"
    "  dev: {{port: {dev}, sleep_after: 3s}}\n"
    "  test: {{port: {test}}}\n"
    "  prod: {{port: {prod}}}\n"
)

FLAKY = """\
from fastapi import FastAPI

from conveyor import data

if data.output_path("broken").exists():
    raise SystemExit("cannot start: the model file is missing")

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
"""


SLOW = """\
import time

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

time.sleep(4)  # loads a large model
app = FastAPI()


@app.get("/", response_class=HTMLResponse)
def home() -> str:
    return "<h1>Slow app ready</h1>"
"""


def tiny_app(root: Path, name: str, source: str, health: str = "/") -> Path:
    """A FastAPI app on forecast-api's lock (its runtime is reused), without checks."""
    app = root / name
    shutil.copytree(EXAMPLES / "forecast-api", app)
    (app / "conveyor.yml").write_text(
        f"name: {name}\ntype: fastapi\nentrypoint: app:app\nrequirements: requirements.txt\n"
        f"health: {health}\n"
    )
    (app / "app.py").write_text(source)
    shutil.rmtree(app / "tests")
    return app


@pytest.fixture
def server(tmp_path: Path):
    running = Server(tmp_path, ENVIRONMENTS)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def cells(server: Server) -> dict[tuple[str, str], dict]:
    found = server.cli_json("status")
    assert isinstance(found, dict)
    return {(c["app"], c["environment"]): c for c in found["cells"]}


def live_pids(server: Server, release_id: int) -> list[int]:
    records = ProcessRecords(server.home / "run" / "processes").load_all()
    return [
        r.pid
        for _, r in records
        if r is not None and r.release_id == release_id and r.matches_live_process()
    ]


def get_json(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def asleep(server: Server, app: str, environment: str = "dev") -> bool:
    return bool(cells(server)[(app, environment)]["sleeping"])


async def shiny_roundtrip(url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=20)) as ws,
    ):
        await ws.send_str(json.dumps({"method": "init", "data": {"region": "south"}}))
        message = await ws.receive(timeout=60)
        return str(message.data)


def test_idle_apps_sleep_and_wake_on_a_request_or_a_websocket(server):
    for app, environments in (("forecast-api", ("dev", "test")), ("sales-dashboard", ("dev",))):
        for environment in environments:
            deployed = server.cli("deploy", str(EXAMPLES / app), "--env", environment)
            assert deployed.code == 0, deployed
    before = cells(server)
    api = before[("forecast-api", "dev")]["release"]
    dashboard = before[("sales-dashboard", "dev")]["release"]
    audit = server.cli_json("audit", "--limit", "500")
    assert isinstance(audit, list)

    wait_for(lambda: asleep(server, "forecast-api"), "forecast-api to sleep in dev", 60)
    wait_for(lambda: asleep(server, "sales-dashboard"), "sales-dashboard to sleep in dev", 60)
    assert live_pids(server, api) == [] and live_pids(server, dashboard) == []
    assert not asleep(server, "forecast-api", "test")  # test's default is 15 minutes
    shown = server.cli("status")
    assert "sleeping" in shown.out, shown
    # gc keeps what a sleeping release needs to wake: its files, bundle and runtime.
    collected = server.cli_json("gc", "--json")
    assert isinstance(collected, dict)
    # (The bytecode store beside the uv cache the test suite shares may hold other tests'
    # leftovers, which gc removes: nothing of this server's.)
    assert {g for g, found in collected["groups"].items() if found["items"]} <= {"bytecode"}

    # An API call is held while the same release starts again, then answered by it.
    status, body = get_json(server.app_url("dev", "forecast-api", "/forecast?region=west"))
    assert (status, body["region"]) == (200, "west")
    assert cells(server)[("forecast-api", "dev")]["release"] == api
    logs = server.cli("logs", "forecast-api", "--env", "dev")
    assert "asleep after 3 s without requests" in logs.out
    assert "woke on a request" in logs.out

    # A Shiny session's WebSocket wakes the dashboard and gets its first messages.
    url = server.app_url("dev", "sales-dashboard", "/websocket/").replace("http", "ws", 1)
    reply = asyncio.run(shiny_roundtrip(url))
    assert "config" in reply or "values" in reply
    assert cells(server)[("sales-dashboard", "dev")]["release"] == dashboard
    assert "woke on a request" in server.cli("logs", "sales-dashboard", "--env", "dev").out

    # A wake is not a deploy: no release, no check, no audit event.
    after = server.cli_json("audit", "--limit", "500")
    assert isinstance(after, list)
    assert [e for e in after if e["action"] != "server.gc"] == audit
    history = server.cli_json("history", "forecast-api", "--env", "dev")
    assert isinstance(history, list) and len(history) == 1

    # After a restart, what sleeps when idle starts asleep: no processes until a request.
    server.stop()
    server.start()
    after_restart = cells(server)
    for key in (("forecast-api", "dev"), ("forecast-api", "test"), ("sales-dashboard", "dev")):
        assert after_restart[key]["sleeping"], key
        assert live_pids(server, after_restart[key]["release"]) == []
    status, body = get_json(server.app_url("test", "forecast-api", "/forecast?region=east"))
    assert (status, body["region"]) == (200, "east")
    assert not asleep(server, "forecast-api", "test")


def test_an_app_that_cannot_start_again_is_explained_and_wakes_once_it_can(server, tmp_path):
    flaky = tiny_app(tmp_path, "flaky", FLAKY, health="/health")
    deployed = server.cli("deploy", str(flaky), "--env", "dev")
    assert deployed.code == 0, deployed
    wait_for(lambda: asleep(server, "flaky"), "flaky to sleep in dev", 60)
    broken = server.home / "outputs" / "dev" / "flaky" / "broken"
    broken.write_text("")

    status, body = get_json(server.app_url("dev", "flaky", "/health"))
    assert status == 503 and body["error"]["code"] == "wake_failed", body
    message = body["error"]["message"]
    assert "could not be started again" in message and "exited" in message
    assert "conveyor logs flaky --env dev" in message
    assert "the model file is missing" not in message  # the app's output stays in its logs
    assert "the model file is missing" in server.cli("logs", "flaky", "--env", "dev").out
    assert asleep(server, "flaky")

    broken.unlink()
    wait_for(
        lambda: get_json(server.app_url("dev", "flaky", "/health"))[0] == 200,
        "flaky to wake once it can start",
        60,
    )


@needs_chromium
def test_a_browser_gets_a_starting_page_that_turns_into_the_app(server, tmp_path, chromium):  # noqa: F811
    slow = tiny_app(tmp_path, "slow", SLOW)
    assert server.cli("deploy", str(slow), "--env", "dev").code == 0
    wait_for(lambda: asleep(server, "slow"), "slow to sleep in dev", 60)
    url = server.app_url("dev", "slow")
    page = chromium.new_page()
    answers: list[int] = []
    page.on("response", lambda response: answers.append(response.status))
    page.goto(url)
    # Not a hanging tab: a page saying what happens, which reloads itself until the app answers.
    assert "slow is starting" in page.content()
    page.wait_for_selector("text=Slow app ready", timeout=90_000)
    assert answers[0] == 503 and answers[-1] == 200
