"""Signing in to the console with a real OpenID Connect provider (oidc-provider-mock, a Flask
provider built on authlib's server, run locally): the authorization code flow with PKCE from a
real Chromium, the ID token checked, the Conveyor user named by a claim. Someone the provider
knows but Conveyor does not is refused, and an answer the console did not ask for is too."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import chromium, needs_chromium, serious_violations  # noqa: F401 (fixture)
from .server import Server, free_port, wait_for

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[str]:
    """The provider in its own process, as a real one would be; stopped by its process id."""
    port = free_port()
    people = [
        {"sub": "u-ana", "preferred_username": "ana"},
        {"sub": "u-mallory", "preferred_username": "mallory"},
        # Another account at the provider that calls itself ana (a claim users may edit).
        {"sub": "u-impostor", "preferred_username": "ana"},
    ]
    command = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
    command += ["--require-nonce", "true"]
    for person in people:
        command += ["--user-claims", json.dumps(person)]
    log = (tmp_path / "provider.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(issuer + "/.well-known/openid-configuration"), "the provider", 30)
        yield issuer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def server_with_sign_on(tmp_path: Path, provider: str) -> Iterator[Server]:
    server = Server(tmp_path)
    server.env["CONVEYOR_OIDC_CLIENT_SECRET"] = "console-secret"
    try:
        server.start(
            arguments=["--oidc-issuer", provider, "--oidc-client-id", "conveyor-console"]
            + ["--oidc-label", "Example SSO"]
        )
        assert server.cli("users", "add", "ana", "--role", "dev:developer").code == 0
        yield server
    finally:
        server.stop()


def test_signing_in_with_the_provider(server_with_sign_on, chromium):  # noqa: F811
    server = server_with_sign_on
    page = chromium.new_page()
    page.goto(server.url + "/")
    page.get_by_role("link", name="Sign in with Example SSO").click()
    # The provider's own page: pick who to be.
    page.get_by_role("button", name="u-ana").click()
    page.wait_for_url(server.url + "/")
    assert "ana" in page.locator("header").inner_text()
    events = [e["action"] for e in server.cli_json("audit")]
    assert "user.sign-in" in events and "user.oidc-linked" in events

    # ana's first single sign-on linked her to u-ana: another account named ana is refused.
    impostor = chromium.new_page()
    impostor.goto(server.url + "/signin")
    impostor.get_by_role("link", name="Sign in with Example SSO").click()
    impostor.get_by_role("button", name="u-impostor").click()
    impostor.wait_for_url(server.url + "/signin/oidc/callback*")
    assert "signs in with another account" in impostor.locator("main").inner_text()

    # Someone the provider knows, who is no user of this Conveyor.
    stranger = chromium.new_page()
    stranger.goto(server.url + "/signin")
    stranger.get_by_role("link", name="Sign in with Example SSO").click()
    stranger.get_by_role("button", name="u-mallory").click()
    stranger.wait_for_url(server.url + "/signin/oidc/callback*")
    assert "mallory is not an active user" in stranger.locator("main").inner_text()
    assert not serious_violations(stranger)

    # An answer the console never asked for (a forged state) signs nobody in.
    forged = chromium.new_page()
    forged.goto(server.url + "/signin/oidc/callback?code=stolen&state=forged")
    assert "not one this server asked for" in forged.locator("main").inner_text()
    forged.goto(server.url + "/")
    assert "/signin" in forged.url
