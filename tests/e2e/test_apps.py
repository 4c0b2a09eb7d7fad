"""Every app type from examples/, deployed through a real runtime and answering at /<app>/
behind the proxy; Shiny and Streamlit also carry a WebSocket session through it."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request

import aiohttp
import pytest

from conveyor.services.pipeline import deploy

from .conftest import EXAMPLES

pytestmark = pytest.mark.e2e

EXPECTED = {
    "forecast-api": ("/forecast?region=west", '"region":"west"'),
    "inventory-api": ("/items", "/inventory-api/items/widgets"),  # url_for carries the prefix
    "kpi-dashboard": ("/", "/kpi-dashboard/_dash-"),  # Dash asset URLs under the prefix
    "sales-dashboard": ("/", "Sales dashboard"),
    "churn-explorer": ("/", "<title>Streamlit</title>"),
    "quarterly-report": ("/", "Q3: 1678 units, target 1000"),
    "docs-site": ("/", "data-dictionary.html"),
    "metrics-service": ("/", '"env": "dev"'),
}


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("app", sorted(EXPECTED))
def test_each_type_answers_at_its_prefix_behind_the_proxy(platform, app):
    bundle = platform.upload(EXAMPLES / app)
    outcome = deploy(platform.services, app, bundle, "dev", "ana")
    assert outcome.live, outcome.message
    path, expected = EXPECTED[app]
    status, body = get(platform.url("dev", app, path))
    assert status == 200
    assert expected in body


QUARTO = shutil.which("quarto")
#: Why the real render is not tested where Quarto is missing (docs/runtime.md, Quarto).
NO_QUARTO = (
    "the Quarto CLI (`quarto`) is not on PATH: install it from quarto.org's official package "
    "(docs/runtime.md). It cannot be installed from PyPI, Debian or npm alone (PyPI's "
    "quarto-cli is a source distribution that downloads the binary from GitHub when it is "
    "built), so the real render is not tested on machines without it"
)


@pytest.mark.skipif(QUARTO is not None, reason=f"this machine has Quarto ({QUARTO})")
def test_quarto_without_quarto_fails_clearly_and_changes_nothing(platform):
    bundle = platform.upload(EXAMPLES / "annual-report")
    outcome = deploy(platform.services, "annual-report", bundle, "dev", "ana")
    assert not outcome.live
    assert "no `quarto` executable" in outcome.release.reason


@pytest.mark.skipif(QUARTO is None, reason=NO_QUARTO)
def test_quarto_renders_a_qmd_with_a_python_cell_and_serves_it(platform):
    # examples/annual-report/report.qmd runs a Python cell that reads conveyor.config in the
    # release's runtime; its output is in the page served at /annual-report/.
    bundle = platform.upload(EXAMPLES / "annual-report")
    outcome = deploy(platform.services, "annual-report", bundle, "dev", "ana")
    assert outcome.live, outcome.message
    status, body = get(platform.url("dev", "annual-report", "/"))
    assert status == 200
    assert "Annual report" in body
    assert "Prepared for the dev environment" in body


async def _websocket_roundtrip(url: str, first_message: str | None) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=20)) as ws,
    ):
        if first_message is not None:
            await ws.send_str(first_message)
        message = await ws.receive(timeout=20)
        return str(message.data)


def test_shiny_session_over_a_websocket_through_the_proxy(platform):
    deploy(
        platform.services,
        "sales-dashboard",
        platform.upload(EXAMPLES / "sales-dashboard"),
        "dev",
        "ana",
    )
    init = json.dumps({"method": "init", "data": {"region": "south"}})
    url = platform.url("dev", "sales-dashboard", "/websocket/").replace("http", "ws", 1)
    reply = asyncio.run(_websocket_roundtrip(url, init))
    assert "config" in reply or "values" in reply


def test_streamlit_session_over_a_websocket_through_the_proxy(platform):
    deploy(
        platform.services,
        "churn-explorer",
        platform.upload(EXAMPLES / "churn-explorer"),
        "dev",
        "ana",
    )
    url = platform.url("dev", "churn-explorer", "/_stcore/stream").replace("http", "ws", 1)

    # A BackMsg asking for a run of the script: field 11 (rerun_script), an empty ClientState,
    # as `BackMsg(rerun_script=ClientState()).SerializeToString()` gives with the streamlit the
    # example's lock pins. The server answers with ForwardMsgs (new_session, deltas, ...).
    rerun = b"\x5a\x00"

    async def session_round_trip() -> list[aiohttp.WSMessage]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                url, timeout=aiohttp.ClientWSTimeout(ws_close=20), protocols=["streamlit"]
            ) as ws:
                await ws.send_bytes(rerun)
                return [await ws.receive(timeout=30) for _ in range(2)]

    replies = asyncio.run(session_round_trip())
    assert all(m.type is aiohttp.WSMsgType.BINARY and m.data for m in replies), replies
