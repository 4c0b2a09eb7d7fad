"""Sleep and wake in the proxy, with real servers and real traffic: a release marked asleep is
woken by the first request (through a waker that, like the runtime's, returns the workers' new
addresses), requests arriving meanwhile wait for the same wake, a browser loading a page gets
a "starting" page instead of a hanging tab, and a wake that fails is explained, never a bare
502."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web

from conveyor.errors import RuntimeFailure
from conveyor.runtime import proxy_wake
from tests.runtime.test_proxy import base, echo_app, in_thread, proxy, serve

__all__ = ["base", "proxy"]  # fixtures

JSON = {"Accept": "application/json"}
NAVIGATION = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


class Waker:
    """Counts wakes; returns ``upstream`` once ``ready`` is set (or raises ``failure``)."""

    def __init__(self, upstream: str = "", failure: str | None = None) -> None:
        self.upstream = upstream
        self.failure = failure
        self.calls: list[int] = []
        self.ready = threading.Event()
        self.ready.set()

    def __call__(self, release_id: int) -> list[str]:
        self.calls.append(release_id)
        self.ready.wait(30)
        if self.failure is not None:
            raise RuntimeFailure(self.failure)
        return [self.upstream]


def test_a_sleeping_release_is_woken_once_by_concurrent_requests_and_serves_them(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("before")) as before, serve(echo_app("after")) as after:
            waker = proxy.waker = Waker(after)
            await in_thread(proxy.set_route, "dev", "app", 7, [before])
            assert not await in_thread(proxy.sleep_if_idle, "dev", "app", 7, 60.0)
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 7, 0.0)
            assert proxy.asleep(7)
            assert not await in_thread(proxy.sleep_if_idle, "dev", "app", 7, 0.0)
            waker.ready.clear()
            async with aiohttp.ClientSession() as client:

                async def get() -> tuple[int, str]:
                    async with client.get(f"{base}/app/x", headers=JSON) as response:
                        return response.status, (await response.json())["upstream"]

                pending = [asyncio.ensure_future(get()) for _ in range(5)]
                await asyncio.sleep(0.3)
                assert not any(task.done() for task in pending)  # held, not refused
                waker.ready.set()
                answers = await asyncio.gather(*pending)
            assert answers == [(200, "after")] * 5
            assert waker.calls == [7]
            assert not proxy.asleep(7)

    asyncio.run(scenario())


def test_a_release_with_a_request_in_flight_does_not_sleep(proxy, base):
    async def scenario() -> None:
        gate = asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            await gate.wait()
            return web.Response(text="done")

        app = web.Application()
        app.router.add_get("/{tail:.*}", slow)
        async with serve(app) as upstream:
            await in_thread(proxy.set_route, "dev", "app", 3, [upstream])
            async with aiohttp.ClientSession() as client:
                request = asyncio.ensure_future(client.get(f"{base}/app/"))
                await asyncio.sleep(0.3)
                assert not await in_thread(proxy.sleep_if_idle, "dev", "app", 3, 0.0)
                gate.set()
                response = await request
                assert response.status == 200
                response.release()
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 3, 0.0)

    asyncio.run(scenario())


def test_a_page_load_gets_a_starting_page_that_reloads_while_the_app_wakes(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("before")) as before, serve(echo_app("after")) as after:
            waker = proxy.waker = Waker(after)
            waker.ready.clear()
            await in_thread(proxy.set_route, "dev", "app", 4, [before])
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 4, 0.0)
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/app/", headers=NAVIGATION) as response:
                    page = await response.text()
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "2"
                    assert response.headers["Cache-Control"] == "no-store"
                # Answered while the wake still waits: not a tab hanging for the whole start.
                assert waker.calls == [4] and proxy.asleep(4)
                assert "app is starting" in page and 'http-equiv="refresh"' in page
                # An API call meanwhile waits for the same wake and is answered by the app.
                held = asyncio.ensure_future(client.get(f"{base}/app/api", headers=JSON))
                await asyncio.sleep(0.2)
                waker.ready.set()
                response = await held
                assert (response.status, (await response.json())["upstream"]) == (200, "after")
                async with client.get(f"{base}/app/", headers=NAVIGATION) as reloaded:
                    assert reloaded.status == 200
            assert waker.calls == [4]

    asyncio.run(scenario())


def test_a_failed_wake_is_explained_without_the_apps_log_and_not_retried_at_once(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("before")) as before:
            waker = proxy.waker = Waker(
                failure="the app exited while starting (worker 0 exited with code 3):\n"
                "  KeyError: DATABASE_PASSWORD=hunter2"
            )
            await in_thread(proxy.set_route, "dev", "app", 5, [before])
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 5, 0.0)
            async with aiohttp.ClientSession() as client:
                for _ in range(2):
                    async with client.get(f"{base}/app/", headers=JSON) as response:
                        assert response.status == 503
                        error = (await response.json())["error"]
                    assert error["code"] == "wake_failed"
                    assert "exited while starting (worker 0 exited with code 3)" in error["message"]
                    assert "conveyor logs app --env dev" in error["message"]
                    assert "hunter2" not in error["message"]
                async with client.get(f"{base}/app/", headers=NAVIGATION) as response:
                    assert response.status == 503
                    page = await response.text()
                    assert "could not start" in page
                    assert 'http-equiv="refresh"' not in page  # no tab retrying by itself
            assert waker.calls == [5]  # a broken app is not started again on every request
            assert proxy.asleep(5)

    asyncio.run(scenario())


def test_a_websocket_upgrade_wakes_a_sleeping_release_and_is_relayed(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("before")) as before, serve(echo_app("after")) as after:
            proxy.waker = Waker(after)
            await in_thread(proxy.set_route, "dev", "app", 6, [before])
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 6, 0.0)
            async with aiohttp.ClientSession() as client:
                async with client.ws_connect(f"{base}/app/ws") as socket:
                    await socket.send_str("hello")
                    assert (await socket.receive_str()) == "after:hello"
                    # An open WebSocket keeps the release awake.
                    assert not await in_thread(proxy.sleep_if_idle, "dev", "app", 6, 0.0)

    asyncio.run(scenario())


def test_a_draining_release_asleep_is_not_woken_by_its_cookie(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("old")) as old, serve(echo_app("new")) as new:
            waker = proxy.waker = Waker(old)
            await in_thread(proxy.set_route, "dev", "app", 1, [old])
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 1, 0.0)
            await in_thread(proxy.set_route, "dev", "app", 2, [new])
            async with aiohttp.ClientSession() as client:
                headers = {**JSON, "Cookie": "conveyor-app=1.0"}
                async with client.get(f"{base}/app/", headers=headers) as response:
                    assert (await response.json())["upstream"] == "new"
            assert waker.calls == []

    asyncio.run(scenario())


def test_a_release_routed_asleep_wakes_on_its_first_request(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("started")) as started:
            waker = proxy.waker = Waker(started)
            await in_thread(proxy.set_route, "dev", "app", 8, ["http://127.0.0.1:9"], asleep=True)
            assert proxy.asleep(8)
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/app/", headers=JSON) as response:
                    assert (await response.json())["upstream"] == "started"
            assert waker.calls == [8] and not proxy.asleep(8)

    asyncio.run(scenario())


def test_the_end_of_a_websocket_session_counts_as_activity(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("app")) as upstream:
            await in_thread(proxy.set_route, "dev", "app", 9, [upstream])
            async with aiohttp.ClientSession() as client:
                async with client.ws_connect(f"{base}/app/ws") as socket:
                    await socket.send_str("hi")
                    await socket.receive_str()
                    await asyncio.sleep(1.5)  # a session longer than the idle time below
            await asyncio.sleep(0.2)
            # Idle counts from when the session ended, not from when it opened.
            assert not await in_thread(proxy.sleep_if_idle, "dev", "app", 9, 1.0)

    asyncio.run(scenario())


def test_a_request_held_by_a_wake_goes_to_the_release_that_replaced_it(proxy, base):
    async def scenario() -> None:
        async with serve(echo_app("old")) as old, serve(echo_app("new")) as new:
            waker = proxy.waker = Waker(old)
            waker.ready.clear()
            await in_thread(proxy.set_route, "dev", "app", 1, [old])
            assert await in_thread(proxy.sleep_if_idle, "dev", "app", 1, 0.0)
            async with aiohttp.ClientSession() as client:
                held = asyncio.ensure_future(client.get(f"{base}/app/", headers=JSON))
                await asyncio.sleep(0.3)
                await in_thread(proxy.set_route, "dev", "app", 2, [new])  # a deploy meanwhile
                waker.ready.set()
                response = await held
                assert (response.status, (await response.json())["upstream"]) == (200, "new")

    asyncio.run(scenario())


def test_a_wake_that_keeps_failing_is_tried_again_less_and_less_often(proxy, base, monkeypatch):
    monkeypatch.setattr(proxy_wake, "RETRY_FAILED_WAKE", 1.0)

    async def scenario() -> None:
        waker = proxy.waker = Waker(failure="health check /health did not pass within 90 s")
        await in_thread(proxy.set_route, "dev", "app", 3, ["http://127.0.0.1:9"], asleep=True)
        async with aiohttp.ClientSession() as client:

            async def code() -> str:
                async with client.get(f"{base}/app/", headers=JSON) as response:
                    return str((await response.json())["error"]["code"])

            assert await code() == "wake_failed" and waker.calls == [3]
            await asyncio.sleep(1.2)  # past the first wait: tried again
            assert await code() == "wake_failed" and waker.calls == [3, 3]
            assert await code() == "wake_failed" and waker.calls == [3, 3]  # now waits 2 s

    asyncio.run(scenario())
