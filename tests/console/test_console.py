"""The console's pages and their rules in process (the browser tests drive a real Chromium in
tests/e2e/test_console_browser.py): signing in and out, sessions and CSRF, the limit on failed
sign-ins, the board's actions by role, admin pages."""

from __future__ import annotations

import re
import time

from conveyor.bundles.build import build_bundle
from conveyor.services.bundles import register_bundle
from conveyor.services.pipeline import deploy, promote
from conveyor.storage import audit

from .conftest import BASE, ORIGIN, PASSWORD, csrf_of


def test_an_anonymous_visitor_is_sent_to_sign_in_and_back(console):
    browser = console.browser()
    answer = browser.get("/apps/hello?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Fapps%2Fhello%3Fx%3D1"
    page = browser.get("/signin?next=/apps/hello").text
    assert '<label for="username">Username</label>' in page
    assert '<label for="password">Password</label>' in page
    assert ">Sign in</button>" in page


def test_signing_in_sets_an_httponly_samesite_session_and_signing_out_ends_it(console):
    browser = console.user("ana", admin=True)
    cookie = browser.cookies.get("conveyor_session")
    assert cookie
    # What the browser was told about the cookie.
    answer = console.browser().post(
        "/signin",
        data={"username": "ana", "password": PASSWORD, "next": "/admin/users"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=lax" in header and "Path=/" in header
    assert answer.headers["location"] == "/admin/users"
    board = browser.get("/")
    assert board.status_code == 200 and "Pipeline" in board.text
    out = browser.post("/signout", data={"csrf": csrf_of(board.text)}, headers=ORIGIN)
    assert out.url.path == "/signin"
    browser.cookies.set("conveyor_session", cookie)
    assert browser.get("/", follow_redirects=False).status_code == 303  # the session ended


def test_a_wrong_password_says_so_without_telling_which_part_was_wrong(console):
    console.user("ana")
    browser = console.browser()
    for username in ("ana", "nobody"):
        answer = browser.post(
            "/signin", data={"username": username, "password": "wrong-password"}, headers=ORIGIN
        )
        assert answer.status_code == 401
        assert "The user name or the password is wrong." in answer.text


def test_failed_sign_ins_are_limited_and_audited(console):
    console.user("ana")
    browser = console.browser()
    for _ in range(5):
        browser.post("/signin", data={"username": "ana", "password": "guess"}, headers=ORIGIN)
    answer = browser.post("/signin", data={"username": "ana", "password": PASSWORD}, headers=ORIGIN)
    assert answer.status_code == 401 and "Too many failed sign-ins" in answer.text
    with console.services.store.transaction() as connection:
        events = audit.events(connection)
    failed = [e for e in events if e.action == "user.sign-in-failed"]
    assert len(failed) == 5 and failed[0].subject == "ana"
    assert [e.subject for e in events if e.action == "user.sign-in-limited"] == ["ana"]
    # A new password, set by an admin, lifts the limit (as the message says).
    from conveyor.services import sign_in, users

    admin = users.add_user(console.services, "root", [], admin=True, actor="setup")
    sign_in.set_password(console.services, admin, "ana", "a brand new passphrase")
    # (From another address: this one stays limited for its window.)
    signed = sign_in.sign_in(console.services, "ana", "a brand new passphrase", "198.51.100.7")
    assert signed.user.name == "ana"


def test_guesses_at_once_are_limited_like_guesses_in_a_row(console):
    """Counted before the password is checked, atomically: of 20 guesses sent together, at
    most five are checked (each check would be a guess)."""
    from concurrent.futures import ThreadPoolExecutor

    from conveyor.errors import ConveyorError
    from conveyor.services import sign_in

    console.user("ana")

    def guess(n: int) -> str:
        try:
            sign_in.sign_in(console.services, "ana", f"guess-{n}", f"203.0.113.{n}")
        except ConveyorError as refused:
            return type(refused).__name__
        return "signed in"

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(guess, range(20)))
    assert answers.count("Unauthorized") <= 5  # checked against the password
    assert answers.count("Forbidden") >= 15  # refused before any check


def test_forms_are_refused_from_another_origin_or_without_the_csrf_token(console):
    browser = console.user("root", admin=True)
    token = csrf_of(browser.get("/admin/users").text)
    evil = browser.post(
        "/admin/users",
        data={"name": "mallory", "admin": "1", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert evil.status_code == 403 and "did not come from the console" in evil.text
    forged = browser.post(
        "/admin/users", data={"name": "mallory", "admin": "1", "csrf": "nope"}, headers=ORIGIN
    )
    assert forged.status_code == 403 and "expired" in forged.text
    done = browser.post("/admin/users", data={"name": "bob", "csrf": token}, headers=ORIGIN)
    assert done.status_code == 200 and "Added bob." in done.text
    assert "mallory" not in done.text


def test_a_viewer_sees_no_buttons_and_a_request_made_anyway_is_refused(console):
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    viewer = console.user("vic", "dev:viewer", "test:viewer")
    page = viewer.get("/").text
    assert "hello" in page and '<button type="submit">Promote' not in page
    assert "Promote to" not in page and "Roll back" not in page
    answer = viewer.post(
        "/apps/hello/promote?to=test", data={"csrf": csrf_of(page)}, headers=ORIGIN
    )
    assert answer.status_code == 403
    assert "vic may not promote into test: that needs the deployer role" in answer.text
    assert viewer.get("/admin/users").status_code == 403


def test_a_deployer_promotes_and_sees_why_a_promotion_is_refused(console):
    from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Policy
    from conveyor.storage import catalog

    with console.services.store.transaction() as connection:
        prod = next(e for e in DEFAULT_ENVIRONMENTS if e.name == "prod")
        catalog.save_environments(
            connection,
            [prod.__class__(**{**prod.__dict__, "policy": Policy(False, "test", approvals=1)})],
        )
    deploy(console.services, "hello", console.bundle(), "dev", "setup")
    ana = console.user("ana", "test:deployer", "prod:deployer")
    page = ana.get("/").text
    assert "Promote to test" in page
    started = ana.post("/apps/hello/promote?to=test", data={"csrf": csrf_of(page)}, headers=ORIGIN)
    assert started.url.path.startswith("/operations/")
    for _ in range(100):
        if "succeeded" in ana.get(started.url.path).text:
            break
        time.sleep(0.05)
    page = ana.get("/").text
    # Prod asks for an approval: the button is there, disabled, with the reason in place.
    assert "Promote to prod</button>" in page and "disabled" in page
    assert "prod requires 1 approval of bundle" in page
    bob = console.user("bob", "prod:approver")
    bob_page = bob.get("/").text
    assert re.search(r"Approve [0-9a-f]{10} for prod", bob_page)
    assert "Promote to prod" not in bob_page
    approved = bob.post(
        "/apps/hello/environments/prod/approve", data={"csrf": csrf_of(bob_page)}, headers=ORIGIN
    )
    assert "Approved bundle" in approved.text
    assert "prod requires" not in ana.get("/").text


def test_admin_pages_create_and_revoke_tokens_and_verify_the_audit_log(console):
    root = console.user("root", admin=True)
    console.user("ci", "test:developer")
    page = root.get("/admin/tokens").text
    made = root.post(
        "/admin/tokens", data={"user": "ci", "days": "30", "csrf": csrf_of(page)}, headers=ORIGIN
    )
    assert "(shown once)" in made.text and "cvt_" in made.text
    assert "cvt_" not in root.get("/admin/tokens").text  # never again
    verified = root.post("/admin/audit/verify", data={"csrf": csrf_of(page)}, headers=ORIGIN)
    assert "MAC chain verified" in verified.text
    environments = root.get("/admin/environments").text
    assert "prod" in environments and "Isolation" in environments


def test_the_board_streams_changes(console):
    browser = console.user("root", admin=True)
    with browser.stream("GET", "/events/board") as events:
        first = next(events.iter_lines())
        assert first == "event: replace"
    assert BASE.startswith("http")


def _job_bundle(console, version: str = "1") -> str:
    root = console.tmp / f"src-nightly-{version}"
    root.mkdir()
    (root / "conveyor.yml").write_text(
        "name: nightly\ntype: job\nentrypoint: python job.py\nschedule: '0 6 * * *'\n"
        "email:\n  - to: [data-team@example.org]\n    on: failure\n"
    )
    (root / "job.py").write_text(f"print({version!r})\n")
    built = build_bundle(root, root / "bundle.tar.gz")
    return register_bundle(console.services, built.archive, built.provenance, "setup").bundle_id


def test_runs_of_a_job_are_listed_started_and_followed_by_who_may(console):
    """The app's page shows each environment's schedule, recipients and latest runs; Run now
    needs the run permission there; a run's page shows its log; a run is reachable only
    through its own app and environment."""
    bundle = _job_bundle(console)
    deploy(console.services, "nightly", bundle, "dev", "setup")
    promote(console.services, "nightly", "setup", to="test")
    promote(console.services, "nightly", "setup", to="prod")
    ana = console.user("ana", "dev:developer", "prod:viewer")
    page = ana.get("/apps/nightly").text
    assert 'id="runs"' in page and "<code>0 6 * * *</code>" in page
    assert "paused here: runs only by hand" in page  # dev's schedules are paused
    assert "data-team@example.org on failure (conveyor.yml)" in page  # prod's schedules run
    assert "Run now in dev" in page and "Run now in prod" not in page
    assert page.count("No runs yet.") == 2

    started = ana.post(
        "/apps/nightly/environments/dev/run", data={"csrf": csrf_of(page)}, headers=ORIGIN
    )
    assert started.status_code == 200 and "/apps/nightly/environments/dev/runs/" in str(started.url)
    run_path = started.url.path
    for _ in range(100):
        shown = ana.get(run_path).text
        if "succeeded" in shown:
            break
        time.sleep(0.05)
    assert "succeeded" in shown and "manual by ana" in shown
    assert "run 1 of nightly in dev" in shown  # its log
    assert "/apps/nightly/environments/dev/runs/" in ana.get("/apps/nightly").text

    refused = ana.post(
        "/apps/nightly/environments/prod/run", data={"csrf": csrf_of(page)}, headers=ORIGIN
    )
    assert refused.status_code == 403
    run_id = run_path.rsplit("/", 1)[1]
    # The run exists, but not as prod's: no other environment's permission reaches it.
    assert ana.get(f"/apps/nightly/environments/prod/runs/{run_id}").status_code == 404
    assert ana.get(f"/apps/hello/environments/dev/runs/{run_id}").status_code == 404
    outsider = console.user("olga", "test:viewer")
    assert outsider.get(run_path).status_code == 403
    assert 'id="runs"' not in console.user("max", "dev:viewer").get("/apps/hello").text
