"""The email that says how a run ended: the subject names the app, the environment, the run and
its result; the body when it ran, the link to its output and, for a failure, the last lines of
its log and the commands that show the rest. A successful report's rendered page is attached
when it is small enough. Header values are checked: none may hold a line break."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from conveyor.domain.run_email import parse_address
from conveyor.domain.schedules import Run, RunState, Trigger
from conveyor.errors import InvalidInput

#: Lines of the log a failure mail shows, each cut to a readable length.
LOG_TAIL_LINES = 20
_LINE_WIDTH = 300


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    subtype: str = "html"


@dataclass(frozen=True)
class RunReport:
    """What a run's email says, gathered once the run has ended."""

    run: Run
    #: The app's address (``http://host:port/<app>``, or ``https://<app>.<domain>/<app>``),
    #: None when unknown.
    app_url: str | None
    log_tail: Sequence[str] = ()
    attachment: Attachment | None = None
    #: Why the output is linked rather than attached ("" when attached or not a report).
    attachment_note: str = ""
    #: Whether the run wrote any output (a job may write none): no link to it otherwise.
    has_output: bool = True


def subject_of(run: Run) -> str:
    result = "succeeded" if run.state is RunState.SUCCEEDED else str(run.state).upper()
    return f"[Conveyor] {run.app} in {run.environment}: run {run.id} {result}"


def build_message(report: RunReport, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The message to send; InvalidInput when a header value would hold a line break."""
    run = report.run
    message = EmailMessage()
    message["Subject"] = _header(subject_of(run), "the subject")
    message["From"] = parse_address(sender)
    message["To"] = ", ".join(parse_address(a) for a in recipients)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    # Mail about mail: no out-of-office answers to an automatic message (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body_of(report))
    if report.attachment is not None:
        message.add_attachment(
            report.attachment.content,
            maintype="text",
            subtype=report.attachment.subtype,
            filename=_header(report.attachment.filename, "the attachment's name"),
        )
    return message


def body_of(report: RunReport) -> str:
    run = report.run
    failed = run.state is not RunState.SUCCEEDED
    by = "its schedule" if run.trigger is Trigger.SCHEDULE else f"{run.actor} (by hand)"
    lines = [
        f"{run.app} in {run.environment}: run {run.id} {run.state}.",
        "",
        f"Started:  {_when(run.started_at)}",
        f"Ended:    {_when(run.ended_at)}",
        f"Result:   {run.state}" + (f": {run.detail}" if run.detail else ""),
        f"Started by {by}, in release {run.release_id}.",
        "",
    ]
    if report.app_url:
        if failed:
            lines.append(f"The previous output is still served at {report.app_url}/")
        else:
            if report.has_output:
                lines.append(f"Its output: {report.app_url}/_runs/{run.id}/")
            else:
                lines.append("It wrote no output.")
            lines.append(f"The latest output is always at {report.app_url}/")
    if report.attachment is not None:
        lines.append(f"The rendered output is attached ({report.attachment.filename}).")
    elif report.attachment_note:
        lines.append(report.attachment_note)
    if failed:
        lines += ["", "The last lines of its log:", ""]
        lines += [f"  {_cut(line)}" for line in report.log_tail[-LOG_TAIL_LINES:]] or [
            "  (the run wrote no log)"
        ]
    lines += [
        "",
        "Its whole log and the runs before it:",
        f"  conveyor runs {run.app} --env {run.environment} --log {run.id}",
        f"  conveyor runs {run.app} --env {run.environment}",
        "",
        "-- ",
        f"Sent by Conveyor for {run.app} in {run.environment}. Who is mailed is set with "
        f"`conveyor email set {run.app} --env {run.environment}` (see `conveyor email show "
        f"{run.app}`).",
    ]
    return "\n".join(lines) + "\n"


def _header(value: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{what} of a run's email would hold a line break: {value!r}")
    return value


def _when(stamp: str | None) -> str:
    if not stamp:
        return "-"
    return stamp[:19].replace("T", " ") + " UTC"


def _cut(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= _LINE_WIDTH else line[: _LINE_WIDTH - 1] + "…"
