"""The SMTP server the Conveyor server sends email through (`conveyor serve --smtp-host`), and
sending one message there with the standard library. The password comes from the server's
environment ($CONVEYOR_SMTP_PASSWORD), never from a command line, and is never shown: not in
``repr``, logs, API answers or errors."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum

from conveyor.domain.run_email import DEFAULT_ATTACHMENT_LIMIT, parse_address
from conveyor.errors import InvalidInput

PASSWORD_VARIABLE = "CONVEYOR_SMTP_PASSWORD"
#: Seconds to connect and for each SMTP exchange.
TIMEOUT = 30.0


class Security(StrEnum):
    #: Plain SMTP upgraded with STARTTLS before anything is sent (submission, port 587).
    STARTTLS = "starttls"
    #: TLS from the first byte (SMTPS, port 465).
    TLS = "tls"
    #: No encryption: only for a relay on this machine or a trusted network.
    NONE = "none"


DEFAULT_PORTS = {Security.STARTTLS: 587, Security.TLS: 465, Security.NONE: 25}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    sender: str
    port: int = 587
    security: Security = Security.STARTTLS
    username: str | None = None
    password: str = field(default="", repr=False)
    #: The largest rendered output attached to a success mail (linked only above it).
    attachment_limit: int = DEFAULT_ATTACHMENT_LIMIT

    def describe(self) -> str:
        """For the server's log: never the password."""
        login = f", as {self.username}" if self.username else ""
        return f"{self.host}:{self.port} ({self.security}{login}), from {self.sender}"


def smtp_settings(
    host: str,
    sender: str | None,
    *,
    port: int | None = None,
    security: str = Security.STARTTLS.value,
    username: str | None = None,
    password: str | None = None,
    attachment_limit: int = DEFAULT_ATTACHMENT_LIMIT,
) -> SmtpSettings:
    """Checked settings; InvalidInput naming the flag to fix."""
    try:
        mode = Security(security)
    except ValueError:
        raise InvalidInput(
            f"--smtp-security {security!r}: use one of {', '.join(s.value for s in Security)}"
        ) from None
    if not sender:
        raise InvalidInput("--smtp-host needs --smtp-from: the address run emails come from")
    try:
        checked_sender = parse_address(sender)
    except InvalidInput as exc:
        raise InvalidInput(f"--smtp-from: {exc}") from None
    if any(ord(c) < 33 for c in host) or not host:
        raise InvalidInput(f"--smtp-host {host!r} is not a host name or address")
    if port is not None and not 0 < port < 65536:
        raise InvalidInput(f"--smtp-port {port} is not a port (1-65535)")
    if username and not password:
        raise InvalidInput(
            f"--smtp-username needs the password in ${PASSWORD_VARIABLE} (the server's "
            "environment, never the command line)"
        )
    if username and mode is Security.NONE and not _is_local(host):
        raise InvalidInput(
            "--smtp-username with --smtp-security none would send the password in clear "
            f"text to {host}; use starttls or tls"
        )
    return SmtpSettings(
        host=host,
        sender=checked_sender,
        port=port or DEFAULT_PORTS[mode],
        security=mode,
        username=username or None,
        password=(password or "") if username else "",
        attachment_limit=attachment_limit,
    )


class SendFailure(Exception):
    """Sending failed; the message says why in words (the SMTP server's answer included)."""


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Hand ``message`` to the SMTP server; SendFailure when it is not accepted."""
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if settings.security is Security.TLS:
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=TIMEOUT, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
        with client:
            if settings.security is Security.STARTTLS:
                client.starttls(context=context)
            if settings.username:
                client.login(settings.username, settings.password)
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendFailure(f"every recipient was refused: {_refusals(exc.recipients)}") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise SendFailure(
            f"the SMTP server refused the login of {settings.username}: {_answer(exc)}"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SendFailure(f"the SMTP server does not support what was asked: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        raise SendFailure(f"the SMTP server answered {_answer(exc)}") from None
    except smtplib.SMTPException as exc:
        raise SendFailure(f"SMTP failed: {exc}") from None
    except ssl.SSLError as exc:
        raise SendFailure(f"TLS with {settings.host}:{settings.port} failed: {exc}") from None
    except (TimeoutError, OSError) as exc:
        raise SendFailure(
            f"cannot reach the SMTP server {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    if refused:
        raise SendFailure(f"some recipients were refused: {_refusals(refused)}")


def _answer(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {text}".strip()


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {answer.decode(errors='replace')})"
        for address, (code, answer) in refused.items()
    )


def _is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")
