"""Regenerate the console's screenshots in docs/ (`make screenshots`): runs `conveyor demo`,
signs in as its user ana in Chromium (Playwright driving the system's `chromium`), and saves
the board and an app's page. The demo is stopped with Ctrl-C (SIGINT, by its process id)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def free_base_port() -> int:
    """A port whose next three are free too (the demo's dev, test and prod)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base < 65000 and all(_free(base + i) for i in range(1, 4)):
            return base
    raise SystemExit("no four free ports in a row")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 1
    port = free_base_port()
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-screenshots-"))
    log = (scratch / "demo.log").open("w+")
    demo = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "demo", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
    )
    try:
        password = _wait_for_password(demo, scratch / "demo.log")
        console = f"http://127.0.0.1:{port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(console + "/signin")
            page.get_by_label("Username").fill("ana")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(console + "/")
            page.screenshot(path=DOCS / "console-board.png")
            page.goto(console + "/apps/forecast-api")
            page.set_viewport_size({"width": 1280, "height": 1100})
            page.screenshot(path=DOCS / "console-app.png")
            browser.close()
        print(f"wrote {DOCS / 'console-board.png'} and {DOCS / 'console-app.png'}")
        return 0
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_for_password(demo: subprocess.Popen[str], log: Path) -> str:
    """ana's password, once the demo says it is serving."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        text = log.read_text()
        found = re.search(r"sign in as ana \(deploys, promotes\), password (\S+)", text)
        if found and "Serving until Ctrl-C" in text:
            return found.group(1)
        if demo.poll() is not None:
            raise SystemExit(f"the demo stopped:\n{text[-3000:]}")
        time.sleep(0.5)
    raise SystemExit("the demo did not finish within 15 minutes")


if __name__ == "__main__":
    sys.exit(main())
