"""A WebSocket session across a real blue-green switch: the session opened before the switch
keeps talking to the old release until the drain closes it with 1012 (service restart), and a
session opened after lands on the new release."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import aiohttp
import pytest

from conveyor.services.pipeline import deploy

pytestmark = pytest.mark.e2e

SERVER = """
import os

from aiohttp import web

VERSION = {version!r}


async def health(request):
    return web.Response(text="ok")


async def echo(request):
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        await socket.send_str(VERSION + ":" + message.data)
    return socket


app = web.Application()
app.router.add_get("/healthz", health)
app.router.add_get("/ws", echo)
web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None)
"""


def make_echo_app(root: Path, version: str) -> Path:
    app = root / f"echo-{version}"
    app.mkdir(parents=True)
    (app / "conveyor.yml").write_text(
        "name: echo\ntype: command\nentrypoint: python serve.py\nhealth: /healthz\n"
    )
    (app / "requirements.txt").write_text("aiohttp\n")
    (app / "serve.py").write_text(textwrap.dedent(SERVER.format(version=version)))
    return app


async def _ask(ws: aiohttp.ClientWebSocketResponse, text: str) -> str:
    await ws.send_str(text)
    message = await ws.receive(timeout=10)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return str(message.data)


async def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame the proxy sent (the client's own close_code turns into 1006
    when its reply cannot be written because the proxy has already closed the connection)."""
    message = await ws.receive(timeout=10)
    if message.type is aiohttp.WSMsgType.CLOSE:
        return int(message.data)
    return ws.close_code


def test_a_websocket_outlives_the_switch_until_the_drain_closes_it_with_1012(platform, tmp_path):
    platform.runtime.websocket_grace = 1.5
    first = platform.upload(make_echo_app(tmp_path, "v1"))
    second = platform.upload(make_echo_app(tmp_path, "v2"))
    assert deploy(platform.services, "echo", first, "dev", "ana").live
    url = platform.url("dev", "echo", "/ws").replace("http", "ws", 1)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            before = await session.ws_connect(url)
            assert await _ask(before, "hello") == "v1:hello"
            switch = asyncio.create_task(
                asyncio.to_thread(deploy, platform.services, "echo", second, "dev", "ana")
            )
            # Until the drain's grace period ends, the old session keeps working.
            answers = []
            while not switch.done():
                try:
                    await before.send_str("still there?")
                except ConnectionResetError:  # closed while this client was not reading
                    code = await _close_code(before)
                    break
                message = await before.receive(timeout=10)
                if message.type is not aiohttp.WSMsgType.TEXT:
                    code = int(message.data) if message.type is aiohttp.WSMsgType.CLOSE else None
                    break
                answers.append(message.data)
                await asyncio.sleep(0.1)
            else:
                code = await _close_code(before)
            outcome = await switch
            assert outcome.live, outcome.message
            assert answers and set(answers) == {"v1:still there?"}
            assert code == 1012
            after = await session.ws_connect(url)
            assert await _ask(after, "hello") == "v2:hello"
            await after.close()

    asyncio.run(scenario())
