"""Emailing how a run ended, once its result is recorded: in the background, so it never
changes or delays that result; what happened (sent, or why not, with the SMTP server's answer)
is written to the run's log and the server's log."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conveyor.domain.apps import show_size
from conveyor.domain.run_email import recipients_for
from conveyor.domain.run_message import LOG_TAIL_LINES, Attachment, RunReport, build_message
from conveyor.domain.schedules import Run, RunState
from conveyor.errors import ConveyorError, InvalidInput
from conveyor.runtime.interface import Runtime
from conveyor.services.run_email import NO_SMTP, rules_for
from conveyor.services.smtp import SendFailure, SmtpSettings, send
from conveyor.storage import catalog, runs
from conveyor.storage.store import Store

log = logging.getLogger("conveyor.email")

#: submit(work): run ``work(started)`` in the background (the server's Background.submit).
Submit = Callable[[Callable[[Callable[[int], None]], Any]], Any]


def _thread(work: Callable[[Callable[[int], None]], Any]) -> None:
    threading.Thread(
        target=work, args=(lambda ignored: None,), name="conveyor-email", daemon=True
    ).start()


class RunMailer:
    """Emails how each run ended to whoever its rules name, through ``smtp``. ``app_urls``:
    environment -> its listener's address (for links to the output), used where the
    environment has no ``domain`` (with one, links are ``https://<app>.<domain>/<app>/``).
    ``reports``: the server's reports directory (``<home>/reports``), to tell whether a run
    wrote any output."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        smtp: SmtpSettings | None,
        app_urls: Mapping[str, str],
        *,
        submit: Submit = _thread,
        say: Callable[[str], None] = log.warning,
        deliver: Callable[[SmtpSettings, EmailMessage], None] = send,
        reports: Path | None = None,
    ) -> None:
        self.reports = reports
        self.store = store
        self.runtime = runtime
        self.smtp = smtp
        self.app_urls = app_urls
        self.submit = submit
        self.say = say
        self.deliver = deliver

    def run_ended(self, run: Run) -> None:
        """Email about ``run`` (recorded as ended) in the background; returns at once."""

        def work(started: Callable[[int], None]) -> None:
            started(run.id)
            self.notify(run)

        try:
            self.submit(work)
        except ConveyorError as exc:  # the server is stopping
            self._line(run, f"not emailed: {exc}")

    def notify(self, run: Run) -> tuple[str, ...]:
        """Send the email now; return who it went to (nobody when it was not sent). Never
        raises: what went wrong goes to the run's log and the server's log."""
        try:
            return self._notify(run)
        except Exception as exc:  # a bug must not reach the run's thread
            log.exception("emailing about run %s failed", run.id)
            self._line(run, f"emailing how the run ended failed: {exc}")
            return ()

    def _notify(self, run: Run) -> tuple[str, ...]:
        with self.store.transaction() as connection:
            rules = rules_for(connection, run.app, run.environment, run.release_id)
            recipients = recipients_for(rules, run.state)
            domain = catalog.get_environment(connection, run.environment).domain
        if not recipients:
            return ()
        if self.smtp is None:
            self._line(run, f"not emailed to {', '.join(recipients)}: {NO_SMTP}")
            return ()
        try:
            message = build_message(self._report(run, domain), self.smtp.sender, recipients)
        except InvalidInput as exc:
            self._line(run, f"not emailed: {exc}")
            return ()
        try:
            self.deliver(self.smtp, message)
        except SendFailure as exc:
            self._line(run, f"emailing {', '.join(recipients)} failed: {exc}")
            self.say(f"run {run.id} of {run.app} in {run.environment}: email failed: {exc}")
            return ()
        self._line(run, f"emailed how the run ended to {', '.join(recipients)}")
        return recipients

    def _report(self, run: Run, domain: str | None = None) -> RunReport:
        app_url = self.app_url(run, domain)
        tail = runs.log_tail(self.store.engine, run.id, LOG_TAIL_LINES)
        if run.state is not RunState.SUCCEEDED:
            return RunReport(run, app_url, tail)
        attachment, note = self._attachment(run)
        return RunReport(run, app_url, tail, attachment, note, has_output=self._wrote_output(run))

    def app_url(self, run: Run, domain: str | None) -> str | None:
        """The app's address in links: its own host under the environment's domain (behind
        the TLS proxy host routing calls for), else the environment's listener."""
        if domain:
            return f"https://{run.app}.{domain}/{run.app}"
        base = self.app_urls.get(run.environment)
        return f"{base}/{run.app}" if base else None

    def _wrote_output(self, run: Run) -> bool:
        """Whether the run left anything in its output directory (a page or other files)."""
        if self.runtime.run_output(run.environment, run.app, run.id) is not None:
            return True
        if self.reports is None:
            return False
        try:
            return any((self.reports / run.environment / run.app / str(run.id)).iterdir())
        except OSError:
            return False

    def _attachment(self, run: Run) -> tuple[Attachment | None, str]:
        assert self.smtp is not None
        page = self.runtime.run_output(run.environment, run.app, run.id)
        if page is None:
            return None, ""
        limit = self.smtp.attachment_limit
        try:
            content = _read_page(page, limit)
        except _TooLarge as exc:
            return None, (
                f"Its rendered output ({show_size(exc.size)}) is larger than the "
                f"{show_size(limit)} an email attaches: follow the link."
            )
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            return None, f"Its rendered output is not attached ({why}): follow the link."
        return Attachment(f"{run.app}-run-{run.id}.html", content), ""

    def _line(self, run: Run, text: str) -> None:
        try:
            runs.append_log(self.store.engine, run.id, text)
        except Exception:  # the database is gone too: the server's log still says it
            log.exception("cannot write to the log of run %s", run.id)
        log.info("run %s of %s in %s: %s", run.id, run.app, run.environment, text)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _read_page(page: os.PathLike[str] | str, limit: int) -> bytes:
    """The page's bytes, when it is a regular file no larger than ``limit``: a link the run
    left there is not followed (it could point at the server's own files)."""
    descriptor = os.open(page, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as opened:
        facts = os.fstat(opened.fileno())
        if not stat.S_ISREG(facts.st_mode):
            raise OSError(0, "it is not a regular file")
        if facts.st_size > limit:
            raise _TooLarge(facts.st_size)
        content = opened.read(limit + 1)
    if len(content) > limit:
        raise _TooLarge(len(content))
    return content
