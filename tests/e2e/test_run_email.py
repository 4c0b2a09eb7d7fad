"""Email of how runs end, through the real CLI against a real server that sends to a real SMTP
server started here (aiosmtpd): a success mails its readers with the page attached, a failure
mails the team with the log's last lines, dev's runs mail no one, a refused recipient is written
to the run's log, and the SMTP password shows nowhere."""

from __future__ import annotations

import email
import email.policy
import getpass
import json
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .server import Server, free_port, wait_for
from .test_runs import JOB

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-smtp-pw"


@dataclass
class Inbox:
    """aiosmtpd's handler: keeps each message; refuses recipients at refused.example.com."""

    messages: list[tuple[list[str], email.message.EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if address.endswith("@refused.example.com"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"conveyor"
            and auth_data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def about(self, text: str) -> list[tuple[list[str], email.message.EmailMessage]]:
        with self.lock:
            return [(to, m) for to, m in self.messages if text in m["Subject"]]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticate,
        auth_require_tls=False,  # on loopback only: the server is told --smtp-security none
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def mailing_server(tmp_path: Path, smtp) -> Iterator[Server]:
    inbox, port = smtp
    running = Server(tmp_path)
    running.env["CONVEYOR_SMTP_PASSWORD"] = PASSWORD
    arguments = [
        "--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", "none",
        "--smtp-from", "conveyor@example.com", "--smtp-username", "conveyor",
        # test is served through a proxy at this address: its links go there.
        "--app-url", "test=https://reports.example.org/conveyor/",
    ]  # fmt: skip
    try:
        running.start(arguments=arguments)
        yield running
    finally:
        running.stop()


def make_job(root: Path) -> Path:
    app = root / "refresh"
    app.mkdir()
    (app / "conveyor.yml").write_text(
        "name: refresh\ntype: job\nentrypoint: python job.py\n"
        "email: {to: [team@example.com], on: failure}\n"
    )
    (app / "job.py").write_text(textwrap.dedent(JOB))
    return app


def run_log(server: Server, environment: str, run_id: int) -> str:
    shown = server.cli("runs", "refresh", "--env", environment, "--log", str(run_id))
    assert shown.code == 0, shown
    return shown.out


def test_runs_are_mailed_to_their_lists(mailing_server, smtp, tmp_path):
    server = mailing_server
    inbox, _ = smtp
    job = make_job(tmp_path)
    for environment in ("dev", "test"):
        assert server.cli("deploy", str(job), "--env", environment).code == 0

    # The readers hear of successes in test; conveyor.yml's team of failures (test only:
    # dev's schedules are paused, so conveyor.yml mails no one from there).
    done = server.cli(
        "email", "set", "refresh", "--env", "test", "--to", "readers@example.com,boss@example.com",
        "--on", "success",
    )  # fmt: skip
    assert done.code == 0, done
    shown = server.cli_json("email", "show", "refresh")
    assert isinstance(shown, dict) and shown["smtp"] is True
    by_env = {e["environment"]: e for e in shown["environments"]}
    assert {(r["on"], r["source"]) for r in by_env["test"]["rules"]} == {
        ("success", f"set by {getpass.getuser()}"),
        ("failure", "conveyor.yml"),
    }
    assert by_env["dev"]["rules"] == [] and by_env["dev"]["quiet"][0]["to"] == ["team@example.com"]
    assert PASSWORD not in json.dumps(shown)

    # Bad addresses: a clear error, no traceback, nothing saved.
    for bad, says in (
        ("readers@example.com\r\nBcc: eve@evil.example", "line break"),
        ("readers", "not an email address"),
    ):
        refused = server.cli("email", "set", "refresh", "--env", "test", "--to", bad)
        assert refused.code != 0 and says in refused.err, refused
        assert "Traceback" not in refused.err

    # A success: the readers get the page attached and the link to this run's output.
    ran = server.cli("run", "refresh", "--env", "test")
    assert ran.code == 0, ran
    [first] = server.cli_json("runs", "refresh", "--env", "test")
    wait_for(lambda: inbox.about(f"run {first['id']} succeeded"), "the success email")
    [(recipients, message)] = inbox.about(f"run {first['id']} succeeded")
    assert sorted(recipients) == ["boss@example.com", "readers@example.com"]
    assert message["Subject"] == f"[Conveyor] refresh in test: run {first['id']} succeeded"
    assert message["From"] == "conveyor@example.com"
    body = message.get_body(("plain",)).get_content()
    assert f"https://reports.example.org/conveyor/refresh/_runs/{first['id']}/" in body
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == f"refresh-run-{first['id']}.html"
    assert attached.get_content() == f"refreshed by run {first['id']} in test"
    wait_for(lambda: "emailed how the run ended" in run_log(server, "test", first["id"]), "log")

    # A failure in dev mails no one; in test it mails the team, with the log's last lines.
    for environment in ("dev", "test"):
        (server.home / "outputs" / environment / "refresh" / "fail-next").write_text("")
        failed = server.cli("run", "refresh", "--env", environment)
        assert failed.code == 1, failed
    [dev_failed] = server.cli_json("runs", "refresh", "--env", "dev")
    test_failed = server.cli_json("runs", "refresh", "--env", "test")[0]
    wait_for(lambda: inbox.about(f"run {test_failed['id']} FAILED"), "the failure email")
    [(recipients, message)] = inbox.about(f"run {test_failed['id']} FAILED")
    assert recipients == ["team@example.com"]
    assert message["Subject"] == f"[Conveyor] refresh in test: run {test_failed['id']} FAILED"
    body = message.get_body(("plain",)).get_content()
    assert "the source data is not there yet" in body
    assert f"conveyor runs refresh --env test --log {test_failed['id']}" in body
    assert not list(message.iter_attachments())
    assert not inbox.about(f"run {dev_failed['id']} ")
    assert "email" not in run_log(server, "dev", dev_failed["id"])
    assert inbox.logins and PASSWORD not in server.log()
    assert "(links: https://reports.example.org/conveyor/<app>/)" in server.log()


def test_a_refused_recipient_is_written_to_the_run_s_log(mailing_server, smtp, tmp_path):
    server = mailing_server
    inbox, _ = smtp
    assert server.cli("deploy", str(make_job(tmp_path)), "--env", "test").code == 0
    done = server.cli(
        "email", "set", "refresh", "--env", "test", "--to", "nobody@refused.example.com",
        "--on", "always",
    )  # fmt: skip
    assert done.code == 0, done
    ran = server.cli("run", "refresh", "--env", "test")
    assert ran.code == 0, ran  # the run's result is its own: mail failing changes nothing
    [run] = server.cli_json("runs", "refresh", "--env", "test")
    assert run["state"] == "succeeded"
    wait_for(lambda: "failed" in run_log(server, "test", run["id"]), "the email failure")
    line = run_log(server, "test", run["id"])
    assert "emailing nobody@refused.example.com failed" in line and "550" in line
    assert "email failed" in server.log() and "550" in server.log()
    assert not inbox.messages
    # The password is in the server's environment, never its command line.
    assert server.process is not None and server.process.process is not None
    command_line = Path(f"/proc/{server.process.process.pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in command_line and b"--smtp-username" in command_line


def test_without_an_smtp_server_setting_recipients_warns(server, tmp_path):
    assert server.cli("deploy", str(make_job(tmp_path)), "--env", "test").code == 0
    done = server.cli("email", "set", "refresh", "--env", "test", "--to", "ana@example.com")
    assert done.code == 0 and "no SMTP server configured" in done.err, done
    shown = server.cli("email", "show", "refresh")
    assert "no SMTP server configured" in shown.err and "ana@example.com" in shown.out
    ran = server.cli("run", "refresh", "--env", "test")
    assert ran.code == 0
