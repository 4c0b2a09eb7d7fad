"""Who is emailed how an app's runs end in an environment, and sending that email once a run has
ended. Rules set per environment (`conveyor email set`) win, one ``on`` at a time, over the
bundle's `email:`, which applies only where schedules are active. Sending happens in the
background after the run's result is recorded: it never changes or delays that result, and a
failure to send is written to the run's log and the server's log."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.domain.apps import show_size
from conveyor.domain.run_email import EmailRule, When, parse_rules, recipients_for
from conveyor.domain.run_message import Attachment, RunReport, build_message
from conveyor.domain.schedules import ACTIVE, Run, RunState
from conveyor.errors import ConveyorError, InvalidInput, NotFound
from conveyor.runtime.interface import Runtime
from conveyor.services.context import Services
from conveyor.services.schedules import refuse_unrunnable
from conveyor.services.smtp import SendFailure, SmtpSettings, send
from conveyor.storage import audit, catalog, releases, runs, schema
from conveyor.storage.store import Store, now

log = logging.getLogger("conveyor.email")

_E = schema.run_email

#: What is said when there are recipients but no SMTP server to send through.
NO_SMTP = (
    "this server has no SMTP server configured (`conveyor serve --smtp-host ... --smtp-from "
    "...`), so it emails no one"
)


@dataclass(frozen=True)
class SourcedRule:
    rule: EmailRule
    #: "set by ana", or "conveyor.yml"
    source: str


@dataclass(frozen=True)
class EmailState:
    """Who hears of an app's runs in one environment, as `conveyor email show` shows it."""

    environment: str
    #: Whether the bundle's `email:` applies here (schedules active).
    active: bool
    rules: tuple[SourcedRule, ...]
    #: The bundle's rules that do not apply here (schedules paused), for the record.
    quiet: tuple[EmailRule, ...]


def set_rule(services: Services, app: str, environment: str, rule: EmailRule, actor: str) -> None:
    """Mail ``rule.to`` (no one, when empty) in ``environment`` when a run ends as ``rule.on``
    asks, in place of the bundle's rule for that ``on``."""
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; deploy it first")
        refuse_unrunnable(connection, app, environment)
        own = [r for r in _own(connection, app, environment) if r["on"] != rule.on.value]
        own.append({"to": list(rule.to), "on": rule.on.value, "by": actor})
        _save(connection, app, environment, own, actor)
        audit.record(
            connection,
            actor,
            "app.email",
            f"{app}/{environment}",
            {"on": rule.on.value, "to": list(rule.to)},
        )


def unset_rules(
    services: Services, app: str, environment: str, on: When | None, actor: str
) -> None:
    """Forget what was set in ``environment`` for ``on`` (every ``on`` when None): the
    bundle's `email:` applies again there."""
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        own = _own(connection, app, environment)
        left = [r for r in own if on is not None and r["on"] != on.value]
        if len(left) == len(own):
            what = f" for {on}" if on is not None else ""
            raise NotFound(f"{app} has no email set{what} in {environment}")
        _save(connection, app, environment, left, actor)
        audit.record(
            connection,
            actor,
            "app.email",
            f"{app}/{environment}",
            {"on": on.value if on else "any", "to": None},
        )


def email_table(services: Services, app: str, environments: Iterable[str]) -> list[EmailState]:
    found = []
    with services.store.transaction() as connection:
        for name in environments:
            environment = catalog.get_environment(connection, name)
            active = environment.schedules == ACTIVE
            rules, quiet = _effective(connection, app, name, active)
            found.append(EmailState(name, active, tuple(rules), tuple(quiet)))
    return found


def rules_for(connection: Connection, app: str, environment: str) -> list[EmailRule]:
    """The rules that apply to a run of ``app`` in ``environment`` now."""
    active = catalog.get_environment(connection, environment).schedules == ACTIVE
    return [sourced.rule for sourced in _effective(connection, app, environment, active)[0]]


def _effective(
    connection: Connection, app: str, environment: str, active: bool
) -> tuple[list[SourcedRule], list[EmailRule]]:
    own = {
        r["on"]: SourcedRule(EmailRule(tuple(r["to"]), When(r["on"])), f"set by {r['by']}")
        for r in _own(connection, app, environment)
    }
    bundle = _bundle_rules(connection, app, environment)
    if not active:
        return list(own.values()), [r for r in bundle if r.on.value not in own]
    found = list(own.values())
    found += [SourcedRule(r, "conveyor.yml") for r in bundle if r.on.value not in own]
    return found, []


def _bundle_rules(connection: Connection, app: str, environment: str) -> list[EmailRule]:
    live = releases.live_release(connection, app, environment)
    if live is None:
        return []
    manifest = catalog.get_bundle(connection, app, live.bundle_id)["manifest"]
    declared = (manifest.get("run") or {}).get("email")
    if not declared:
        return []
    try:
        return list(parse_rules(declared))
    except InvalidInput:  # verified when the bundle was registered; never trusted blindly
        log.warning("ignoring the email rules of %s's bundle %s", app, live.bundle_id)
        return []


def _own(connection: Connection, app: str, environment: str) -> list[dict[str, Any]]:
    row = connection.execute(
        select(_E.c.rules).where(and_(_E.c.app == app, _E.c.environment == environment))
    ).first()
    return list(json.loads(row.rules)) if row is not None else []


def _save(
    connection: Connection, app: str, environment: str, rules: list[dict[str, Any]], actor: str
) -> None:
    key = and_(_E.c.app == app, _E.c.environment == environment)
    if not rules:
        connection.execute(delete(_E).where(key))
        return
    values = {"rules": json.dumps(rules), "updated_by": actor, "updated_at": now()}
    if connection.execute(select(_E.c.app).where(key)).first() is None:
        connection.execute(insert(_E).values(app=app, environment=environment, **values))
    else:
        connection.execute(update(_E).where(key).values(**values))


#: submit(work): run ``work(started)`` in the background (the server's Background.submit).
Submit = Callable[[Callable[[Callable[[int], None]], Any]], Any]


def _thread(work: Callable[[Callable[[int], None]], Any]) -> None:
    threading.Thread(
        target=work, args=(lambda ignored: None,), name="conveyor-email", daemon=True
    ).start()


class RunMailer:
    """Emails how each run ended to whoever its rules name, through ``smtp``. ``app_urls``:
    environment -> its listener's public address (for links to the output)."""

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
    ) -> None:
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
            recipients = recipients_for(rules_for(connection, run.app, run.environment), run.state)
        if not recipients:
            return ()
        if self.smtp is None:
            self._line(run, f"not emailed to {', '.join(recipients)}: {NO_SMTP}")
            return ()
        try:
            message = build_message(self._report(run), self.smtp.sender, recipients)
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

    def _report(self, run: Run) -> RunReport:
        base = self.app_urls.get(run.environment)
        tail = [line for _, _, line in runs.log_lines(self.store.engine, run.id)][-40:]
        if run.state is not RunState.SUCCEEDED:
            return RunReport(run, f"{base}/{run.app}" if base else None, tail)
        attachment, note = self._attachment(run)
        return RunReport(run, f"{base}/{run.app}" if base else None, tail, attachment, note)

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
