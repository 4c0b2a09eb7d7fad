"""The console in a real Chromium against a real `conveyor serve`: people sign in, read the
board, promote, are refused with the reason in place, approve as someone else, promote to
Prod, roll back; a viewer gets no buttons and a 403 for a request made anyway; an anonymous
visitor of a `signed-in` app signs in and comes back to it; a Shiny app still works through
the proxy after sign-in; a job is run from its page, its log followed to the end. axe-core
checks every page for serious accessibility violations."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import chromium, needs_chromium, serious_violations  # noqa: F401 (fixture)
from .server import Server, make_app, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENVIRONMENTS = (
    "environments:\n  dev: {{port: {dev}}}\n  test: {{port: {test}}}\n"
    "  prod: {{port: {prod}, approvals: 1, approver_not_deployer: true}}\n"
)
PASSWORDS = {"ana": "ana-secret-pass", "bob": "bob-secret-pass", "vic": "vic-secret-pass"}


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Server]:
    """Three apps live in dev (beta in test too); ana deploys and promotes, bob approves for
    prod, vic views everything; each with a console password."""
    server = Server(tmp_path, ENVIRONMENTS)
    try:
        server.start()
        for name in ("alpha", "beta", "gamma"):
            app = make_app(tmp_path / "src", "v1", name=name)
            assert server.cli("deploy", str(app), "--env", "dev").code == 0
        assert server.cli("promote", "beta", "--to", "test").code == 0
        roles = {
            "ana": ["dev:developer", "test:deployer", "prod:deployer"],
            "bob": ["test:viewer", "prod:approver"],
            "vic": ["dev:viewer", "test:viewer", "prod:viewer"],
        }
        for name, granted in roles.items():
            arguments = [arg for role in granted for arg in ("--role", role)]
            added = server.cli(
                "users", "add", name, *arguments, "--password-stdin", stdin=PASSWORDS[name] + "\n"
            )
            assert added.code == 0, added
        yield server
    finally:
        server.stop()


def sign_in(page, name: str) -> None:
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()


def cell(page, app: str, environment: str):
    return page.locator(f'td[data-app="{app}"][data-env="{environment}"]')


def no_serious_violations(page) -> None:
    found = serious_violations(page)
    assert not found, f"{page.url}: {found}"


def handshake(port: int, path: str) -> int:
    """The status a WebSocket handshake gets, with no cookie (101: it was accepted)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key}
        connection.request("GET", path, headers={**headers, "Sec-WebSocket-Version": "13"})
        return connection.getresponse().status
    finally:
        connection.close()


def finish(page) -> str:
    """On an operation's page: wait for its end, return its final state line."""
    state = page.locator("#state")
    wait_for(
        lambda: state.inner_text().split(":")[0] in ("succeeded", "failed", "interrupted"),
        "the operation to end",
        timeout=180,
    )
    return state.inner_text()


def test_the_pipeline_from_the_browser(pipeline, chromium):  # noqa: F811
    server = pipeline
    console = server.url
    ana_context = chromium.new_context(viewport={"width": 1280, "height": 720})
    ana = ana_context.new_page()
    ana.on("dialog", lambda dialog: dialog.accept())

    # Sign-in: the board asks for it, and comes back after it.
    ana.goto(console + "/")
    assert "/signin" in ana.url
    no_serious_violations(ana)
    sign_in(ana, "ana")
    ana.wait_for_url(console + "/")
    # The board: three apps, three environments in pipeline order.
    headers = ana.locator("table.board thead th").all_inner_texts()
    assert [h.lower() for h in headers] == ["app", "dev", "test", "prod"]
    rows = ana.locator("table.board tbody th").all_inner_texts()
    assert rows == ["alpha", "beta", "gamma"]
    assert "release" in cell(ana, "beta", "test").inner_text()
    assert "Nothing live" in cell(ana, "gamma", "prod").inner_text()
    no_serious_violations(ana)

    # Promote alpha dev -> test: confirmation, live progress, the result.
    cell(ana, "alpha", "test").get_by_role("button", name="Promote to test").click()
    ana.wait_for_url("**/operations/*")
    assert finish(ana).startswith("succeeded"), ana.locator("#log").inner_text()
    no_serious_violations(ana)
    assert server.get("test", "alpha") == (200, "v1")

    # Prod refuses it for now, and says why where the button is.
    ana.goto(console + "/")
    prod = cell(ana, "alpha", "prod")
    button = prod.get_by_role("button", name="Promote to prod")
    assert button.is_disabled()
    assert "requires 1 approval" in prod.locator(".refusal").inner_text()
    assert "approvals 0 of 1" in prod.inner_text()

    # bob approves it, in his own browser.
    bob_context = chromium.new_context(viewport={"width": 1280, "height": 720})
    bob = bob_context.new_page()
    bob.on("dialog", lambda dialog: dialog.accept())
    bob.goto(console + "/")
    sign_in(bob, "bob")
    bob.wait_for_url(console + "/")
    cell(bob, "alpha", "prod").get_by_role("button", name="Approve").click()
    bob.wait_for_url("**/?notice=*")
    assert "Approved bundle" in bob.locator(".notice").inner_text()

    # ana's board updates by itself (server-sent events): the promotion is now allowed.
    wait_for(lambda: not button.is_disabled(), "the board to update without a reload", 30)
    assert "approvals 1 of 1" in prod.inner_text()
    button.click()
    ana.wait_for_url("**/operations/*")
    assert finish(ana).startswith("succeeded"), ana.locator("#log").inner_text()
    assert server.get("prod", "alpha") == (200, "v1")

    # Roll back in test (ana deploys there) after a v2: the board offers the earlier bundle.
    v2 = make_app(server.root / "src2", "v2", name="alpha")
    assert server.cli("deploy", str(v2), "--env", "test").code == 0
    assert server.get("test", "alpha") == (200, "v2")
    ana.goto(console + "/")
    assert cell(ana, "alpha", "dev").get_by_role("button", name="Roll back").count() == 0
    cell(ana, "alpha", "test").get_by_role("button", name="Roll back").click()
    ana.wait_for_url("**/operations/*")
    assert finish(ana).startswith("succeeded"), ana.locator("#log").inner_text()
    assert server.get("test", "alpha") == (200, "v1")

    # An app's page: history, logs, variables, who may view it.
    ana.goto(console + "/apps/alpha")
    page_text = ana.locator("main").inner_text()
    for expected in ("History", "rollback", "Compare two environments", "Variables", "Audit"):
        assert expected in page_text, expected
    no_serious_violations(ana)


def test_a_viewer_sees_no_buttons_and_is_refused_anyway(pipeline, chromium):  # noqa: F811
    server = pipeline
    page = chromium.new_page()
    page.goto(server.url + "/")
    sign_in(page, "vic")
    page.wait_for_url(server.url + "/")
    assert page.locator("table.board td button").count() == 0
    assert page.locator("table.board td form").count() == 0
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    answer = page.request.post(
        server.url + "/apps/alpha/promote?to=test",
        form={"csrf": csrf or "", "bundle": ""},
        headers={"Origin": server.url},
    )
    assert answer.status == 403
    assert server.get("test", "alpha")[0] != 200  # nothing was promoted
    no_serious_violations(page)


def test_an_anonymous_visitor_signs_in_and_comes_back_to_the_app(pipeline, chromium):  # noqa: F811
    server = pipeline
    assert server.cli("access", "set", "gamma", "--env", "dev", "signed-in").code == 0
    app_url = server.app_url("dev", "gamma", "/")
    # Without a session: not the app, but the way to sign in (and back).
    connection = http.client.HTTPConnection("127.0.0.1", server.ports["dev"], timeout=10)
    try:
        connection.request("GET", "/gamma/")
        answer = connection.getresponse()
        assert answer.status in (302, 303, 307), answer.status
        assert answer.getheader("Location", "").startswith(server.url + "/signin?next=")
    finally:
        connection.close()
    browser = chromium.new_context()
    page = browser.new_page()
    page.goto(app_url)
    assert page.url.startswith(server.url + "/signin")
    sign_in(page, "vic")
    page.wait_for_url(app_url)
    assert page.locator("body").inner_text().strip() == "v1"

    # The visit is counted by the proxy and shown on the app's page.
    console = browser.new_page()

    def usage_row() -> str:
        console.goto(server.url + "/apps/gamma")
        return console.locator("tr", has_text="signed-in").first.inner_text()

    wait_for(lambda: usage_row().split()[-3:] == ["1", "1", "1"], "the visit to be counted", 30)
    no_serious_violations(console)

    # Open to named people only: vic, signed in, gets a page saying why, not the app.
    assert server.cli("access", "set", "gamma", "--env", "dev", "ana,reviewers").code == 0

    def refused() -> bool:
        return page.goto(app_url).status == 403

    wait_for(refused, "the new access to apply", 30)
    assert "vic may not view gamma in dev" in page.locator("body").inner_text()


def test_a_shiny_app_works_through_the_proxy_after_sign_in(pipeline, chromium, tmp_path):  # noqa: F811
    server = pipeline
    source = tmp_path / "sales-dashboard"
    shutil.copytree(
        EXAMPLES / "sales-dashboard",
        source,
        ignore=shutil.ignore_patterns(".conveyor", "__pycache__"),
    )
    deployed = server.cli("deploy", str(source), "--env", "dev", timeout=600)
    assert deployed.code == 0, deployed
    assert server.cli("access", "set", "sales-dashboard", "--env", "dev", "signed-in").code == 0
    page = chromium.new_page()
    app_url = server.app_url("dev", "sales-dashboard", "/")
    page.goto(app_url)
    assert page.url.startswith(server.url + "/signin")
    sign_in(page, "ana")
    page.wait_for_url(app_url)
    # Shiny renders outputs over its WebSocket: a changed input must come back rendered.
    summary = page.locator("#summary")
    wait_for(lambda: "units over" in summary.inner_text(), "Shiny's first render", 60)
    page.select_option("#region", "south")
    wait_for(lambda: summary.inner_text().startswith("south: 395"), "Shiny's answer", 30)

    # Its WebSocket, opened without the browser's session, is refused at the handshake.
    assert handshake(server.ports["dev"], "/sales-dashboard/websocket/") in (303, 401, 403)


def test_a_job_is_run_from_its_page_and_its_log_and_output_are_shown(pipeline, chromium, tmp_path):  # noqa: F811
    server = pipeline
    source = tmp_path / "refresh"
    source.mkdir()
    (source / "conveyor.yml").write_text("name: refresh\ntype: job\nentrypoint: python job.py\n")
    (source / "job.py").write_text(
        "import os, pathlib\n"
        "print('refreshing the warehouse')\n"
        "out = pathlib.Path(os.environ['CONVEYOR_RUN_OUTPUT'])\n"
        "(out / 'index.html').write_text('<h1>refreshed</h1>')\n"
    )
    assert server.cli("deploy", str(source), "--env", "dev").code == 0
    page = chromium.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(server.url + "/apps/refresh")
    sign_in(page, "ana")
    page.wait_for_url(server.url + "/apps/refresh")
    runs = page.locator("#runs")
    assert "Schedule: none. Email: no one." in runs.inner_text()
    assert "No runs yet." in runs.inner_text()
    # Only where there is a live release to run (ana may run in test and prod too).
    assert page.get_by_role("button", name="Run now in test").count() == 0
    no_serious_violations(page)
    page.get_by_role("button", name="Run now in dev").click()
    page.wait_for_url("**/apps/refresh/environments/dev/runs/*")
    assert finish(page).startswith("succeeded")
    wait_for(lambda: "refreshing the warehouse" in page.locator("#log").inner_text(), "the log")
    no_serious_violations(page)
    page.reload()  # the link to its output is there once the run succeeded
    output = page.get_by_role("link", name="Its output")
    assert output.get_attribute("href") == server.app_url("dev", "refresh", "/_runs/1/")
    page.goto(server.url + "/apps/refresh")
    assert "manual by ana" in page.locator("#runs").inner_text()
    # The schedule, set from the page.
    page.get_by_text("Schedule and email in dev").click()
    no_serious_violations(page)  # the forms open
    page.get_by_label("Cron").first.fill("30 6 * * 1-5")
    page.get_by_role("button", name="Set schedule in dev").click()
    page.wait_for_url("**/apps/refresh?notice=*")
    assert "30 6 * * 1-5 (UTC, set by ana)" in page.locator("#runs").inner_text()
    no_serious_violations(page)

    # vic views dev: the runs, no button.
    viewer = chromium.new_context().new_page()
    viewer.goto(server.url + "/apps/refresh")
    sign_in(viewer, "vic")
    viewer.wait_for_url(server.url + "/apps/refresh")
    assert "manual by ana" in viewer.locator("#runs").inner_text()
    assert viewer.get_by_role("button", name="Run now in dev").count() == 0
    assert viewer.get_by_text("Schedule and email in dev").count() == 0
