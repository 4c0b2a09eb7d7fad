"""`conveyor serve` and `conveyor login`: running a server and reaching it."""

from __future__ import annotations

import os
import sys
import urllib.parse
from pathlib import Path

import click

from conveyor.cli import output
from conveyor.cli.connection import client_of
from conveyor.client import Client
from conveyor.console.settings import ConsoleSettings, OidcSettings
from conveyor.credentials import save_token
from conveyor.domain.apps import parse_size
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS
from conveyor.domain.retention import (
    DEFAULT_KEEP_RELEASES,
    DEFAULT_KEEP_RUNS,
    RetentionSettings,
)
from conveyor.domain.schedules import parse_duration
from conveyor.services.environments_file import read_environments, read_git_sources
from conveyor.services.smtp import PASSWORD_VARIABLE, SmtpSettings, smtp_settings
from conveyor.storage.store import default_home


@click.command("serve")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the server keeps its state. Default: $CONVEYOR_HOME or ~/.conveyor",
)
@click.option(
    "--environments",
    "environments_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file declaring the environments. Default: dev 8701, test 8702, prod 8703.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, help="Port of the control API.")
@click.option(
    "--database-url",
    envvar="CONVEYOR_DATABASE_URL",
    help="PostgreSQL URL for metadata ($CONVEYOR_DATABASE_URL). Default: SQLite in the home.",
)
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="Allow a non-loopback --host without TLS: a proxy in front terminates TLS.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Serve the API and the environments' listeners over HTTPS with this certificate.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help="A proxy in front (address or network, e.g. 127.0.0.1) whose X-Forwarded-* headers "
    "apps get; from anyone else they are replaced. Repeat for more.",
)
@click.option(
    "--websocket-max-message",
    default="8MiB",
    show_default=True,
    metavar="SIZE",
    help="The largest WebSocket message the proxy accepts from a client.",
)
@click.option(
    "--console-url",
    metavar="URL",
    help="The console's public address, when a proxy serves it (sign-in redirects go there). "
    "Default: the control address.",
)
@click.option(
    "--app-url",
    "app_urls",
    multiple=True,
    metavar="ENV=URL",
    help="The public address of an environment's listener, when a proxy serves it (e.g. "
    "prod=https://apps.example.org): links to its apps in run emails and the console use it. "
    "Repeat for more. Default: the listener's own address; an environment with a domain "
    "links to each app's own host instead.",
)
@click.option(
    "--cookie-domain",
    metavar="DOMAIN",
    help="Set the console's session cookie for DOMAIN (e.g. example.com), so signing in once "
    "works for apps on its subdomains (host routing).",
)
@click.option("--oidc-issuer", metavar="URL", help="Sign in with this OpenID Connect provider.")
@click.option("--oidc-client-id", metavar="ID", help="The console's client id at the provider.")
@click.option(
    "--oidc-username-claim",
    default="preferred_username",
    show_default=True,
    help="The ID token claim that names the Conveyor user.",
)
@click.option(
    "--oidc-label", default="single sign-on", show_default=True, help="The sign-in button's name."
)
@click.option(
    "--smtp-host",
    metavar="HOST",
    help="Email how runs end through this SMTP server (off without it).",
)
@click.option(
    "--smtp-port",
    type=int,
    metavar="PORT",
    help="The SMTP server's port. Default: 587 (starttls), 465 (tls), 25 (none).",
)
@click.option(
    "--smtp-security",
    type=click.Choice(["starttls", "tls", "none"]),
    default="starttls",
    show_default=True,
    help="STARTTLS after connecting, TLS from the start, or none (a relay on this machine).",
)
@click.option("--smtp-from", metavar="ADDRESS", help="The address run emails come from.")
@click.option(
    "--smtp-username",
    metavar="USER",
    help="Log in as USER; the password comes from $CONVEYOR_SMTP_PASSWORD, never a flag.",
)
@click.option(
    "--email-attachment-limit",
    default="10MiB",
    show_default=True,
    metavar="SIZE",
    help="The largest rendered page a success email attaches (larger ones are linked).",
)
@click.option(
    "--keep-releases",
    default=DEFAULT_KEEP_RELEASES,
    show_default=True,
    type=click.IntRange(min=1),
    help="gc keeps, per app and environment, the live release and this many earlier ones "
    "(rollback targets), with their bundles and runtimes.",
)
@click.option(
    "--keep-runs",
    default=DEFAULT_KEEP_RUNS,
    show_default=True,
    type=click.IntRange(min=1),
    help="gc keeps the outputs of this many latest runs per report or job and environment "
    "(and always the one served).",
)
@click.option(
    "--keep-logs",
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="gc removes operation, run and release logs older than this (e.g. 30d, 12h); "
    "a bundle never released is kept this long too.",
)
def serve_command(
    home: Path | None,
    environments_file: Path | None,
    host: str,
    port: int,
    database_url: str | None,
    behind_proxy: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    trusted_proxies: tuple[str, ...],
    websocket_max_message: str,
    console_url: str | None,
    app_urls: tuple[str, ...],
    cookie_domain: str | None,
    oidc_issuer: str | None,
    oidc_client_id: str | None,
    oidc_username_claim: str,
    oidc_label: str,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str,
    smtp_from: str | None,
    smtp_username: str | None,
    email_attachment_limit: str,
    keep_releases: int,
    keep_runs: int,
    keep_logs: str,
) -> None:
    """Run the Conveyor server: the control API and one listener per environment.

    On start it serves again every release that was live (and stops what a killed server left
    running); on SIGTERM or Ctrl-C it lets running operations finish, then stops the apps.
    The first start makes you its admin and saves your API token in your CLI's credentials
    file (0600); it prints the token only when standard output is a terminal. The server's
    home is made private to its user (0700), and its keys (secrets, audit chain) are kept in
    HOME/keys.json or $CONVEYOR_KEYS_FILE: back them up with the database.
    Once a day it removes what retention no longer keeps (`conveyor gc`; --keep-* flags).
    """
    from conveyor.api.server import ServerSettings, serve  # the server's imports, only here

    environments = (
        read_environments(environments_file) if environments_file else list(DEFAULT_ENVIRONMENTS)
    )
    git_sources = read_git_sources(environments_file) if environments_file else []
    cache = os.environ.get("CONVEYOR_UV_CACHE")
    settings = ServerSettings(
        home=(home or default_home()).absolute(),
        host=host,
        port=port,
        environments=environments,
        environments_file=environments_file.absolute() if environments_file else None,
        database_url=database_url,
        behind_proxy=behind_proxy,
        tls_cert=tls_cert,
        tls_key=tls_key,
        uv_cache=Path(cache) if cache else None,
        git_sources=git_sources,
        trusted_proxies=list(trusted_proxies),
        websocket_limit=parse_size(websocket_max_message, "--websocket-max-message"),
        console_url=console_url,
        app_urls=_app_urls(app_urls),
        console=ConsoleSettings(
            cookie_domain=cookie_domain,
            oidc=_oidc(oidc_issuer, oidc_client_id, oidc_username_claim, oidc_label),
        ),
        smtp=_smtp(
            smtp_host,
            smtp_port,
            smtp_security,
            smtp_from,
            smtp_username,
            parse_size(email_attachment_limit, "--email-attachment-limit"),
        ),
        retention=RetentionSettings(
            keep_releases=keep_releases,
            keep_runs=keep_runs,
            keep_logs=parse_duration(keep_logs, "--keep-logs"),
        ),
    )
    serve(settings, lambda line: click.echo(line, err=True), _show_token)


def _app_urls(values: tuple[str, ...]) -> dict[str, str]:
    """``ENV=URL`` pairs: an http(s) address with a host, maybe a path prefix, nothing else."""
    found: dict[str, str] = {}
    for value in values:
        environment, _, url = value.partition("=")
        environment = environment.strip()
        parts = urllib.parse.urlsplit(url.strip())
        if not environment or not url:
            raise click.BadParameter(
                f"{value!r}: give ENV=URL, e.g. prod=https://apps.example.org",
                param_hint="--app-url",
            )
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise click.BadParameter(
                f"{url!r} for {environment}: an http:// or https:// address with a host (and at "
                "most a path) is expected, e.g. https://apps.example.org",
                param_hint="--app-url",
            )
        if environment in found:
            raise click.BadParameter(f"{environment} is given twice", param_hint="--app-url")
        found[environment] = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")
        )
    return found


def _oidc(issuer: str | None, client_id: str | None, claim: str, label: str) -> OidcSettings | None:
    """The provider, when --oidc-issuer is given; its client secret comes from the server's
    environment ($CONVEYOR_OIDC_CLIENT_SECRET), never from the command line."""
    if issuer is None:
        return None
    if not client_id:
        raise click.UsageError("--oidc-issuer needs --oidc-client-id")
    secret = os.environ.get("CONVEYOR_OIDC_CLIENT_SECRET", "")
    return OidcSettings(issuer, client_id, secret, claim, label)


def _smtp(
    host: str | None,
    port: int | None,
    security: str,
    sender: str | None,
    username: str | None,
    attachment_limit: int,
) -> SmtpSettings | None:
    """The SMTP server, when --smtp-host is given; its password comes from the server's
    environment ($CONVEYOR_SMTP_PASSWORD), never from the command line (`ps` shows that)."""
    if host is None:
        if sender or username or port:
            raise click.UsageError("--smtp-from, --smtp-port and --smtp-username need --smtp-host")
        return None
    return smtp_settings(
        host,
        sender,
        port=port,
        security=security,
        username=username,
        password=os.environ.get(PASSWORD_VARIABLE),
        attachment_limit=attachment_limit,
    )


def _show_token(user: str, token: str) -> None:
    """The first admin token goes to the credentials file; it is printed too only when
    standard output is a terminal, so it never lands in a log file."""
    if sys.stdout.isatty():
        click.echo(f"{user}'s API token (also in your credentials file): {token}")


@click.command("login")
@click.option("--token", help="The API token. Default: asked for without echo.")
@click.pass_context
def login_command(ctx: click.Context, token: str | None) -> None:
    """Save a token for the server (--server, $CONVEYOR_SERVER or the saved default), after
    checking that the server accepts it."""
    server = client_of(ctx).server
    token = token or click.prompt(f"API token for {server}", hide_input=True)
    client = Client(server, token)
    me = client.me()  # raises Unauthorized when the token is not valid there
    path = save_token(server, token)
    roles = ", ".join(me["roles"]) or "no roles"
    output.info(
        f"logged in to {server} as {me['name']} ({'admin; ' if me['admin'] else ''}{roles}); "
        f"token saved in {path}"
    )
