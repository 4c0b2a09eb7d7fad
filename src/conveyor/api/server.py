"""`conveyor serve`: the control API and one proxy listener per environment, in one process.

Start: make the home private, open the store (its keys outside the database), write the
environments, create the first user (an admin) and their token, saved only to the starting
user's credentials file, stop what a killed server left running, reconcile (live releases start
again; interrupted work is marked so), then listen.
Stop (SIGTERM or Ctrl-C): take no new operations, let running ones finish for a while (what
is still running is marked interrupted on the next start), stop the apps gracefully."""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import logging
import os
import signal
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from conveyor.api.app import ApiContext, create_app
from conveyor.api.background import Background
from conveyor.api.viewer_gate import ViewerGate
from conveyor.console.settings import ConsoleSettings
from conveyor.credentials import save_token
from conveyor.domain.environments import DEFAULT_ENVIRONMENTS, Environment
from conveyor.domain.retention import RetentionSettings
from conveyor.errors import ConveyorError, InvalidInput, RuntimeFailure
from conveyor.runtime.builds import RuntimeBuilder
from conveyor.runtime.local import LocalRuntime
from conveyor.runtime.proxy import Proxy
from conveyor.runtime.proxy_forward import DEFAULT_WEBSOCKET_LIMIT
from conveyor.runtime.sleeper import Sleeper
from conveyor.services.context import Services
from conveyor.services.daily_gc import DailyGc
from conveyor.services.environments import apply as apply_environments
from conveyor.services.git_driven import GitSource, GitWatcher
from conveyor.services.reconcile import reconcile
from conveyor.services.releasing import record_repair
from conveyor.services.retention import Retention
from conveyor.services.run_mailer import RunMailer
from conveyor.services.scheduler import Scheduler
from conveyor.services.smtp import SmtpSettings
from conveyor.storage import audit, catalog, tokens, users
from conveyor.storage.home import secure_home
from conveyor.storage.store import Store


@dataclass
class ServerSettings:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8700
    #: The environments file the server is started with (it then manages the environments);
    #: None: the environments the store has, or dev/test/prod on a first start.
    environments_file: Path | None = None
    environments: list[Environment] = field(default_factory=lambda: list(DEFAULT_ENVIRONMENTS))
    database_url: str | None = None
    #: Listen beyond loopback without TLS because a TLS-terminating proxy is in front.
    behind_proxy: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Seconds running operations get to finish when the server stops.
    stop_grace: float = 30.0
    uv_cache: Path | None = None
    #: Repositories to watch (git-driven mode); none by default.
    git_sources: list[GitSource] = field(default_factory=list)
    #: Proxies in front whose X-Forwarded-* headers apps may trust (addresses or networks).
    trusted_proxies: list[str] = field(default_factory=list)
    #: The largest WebSocket message the proxy accepts from a client, in bytes.
    websocket_limit: int = DEFAULT_WEBSOCKET_LIMIT
    #: The console's public address (behind a proxy); default the control address.
    console_url: str | None = None
    #: environment -> the public address of its listener (behind a proxy), for the links in
    #: run emails and the console; default the listener's own address.
    app_urls: dict[str, str] = field(default_factory=dict)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    #: The SMTP server run emails go through; None: no email.
    smtp: SmtpSettings | None = None
    #: What `conveyor gc` (and the daily pass) keeps.
    retention: RetentionSettings = field(default_factory=RetentionSettings)


def check_exposure(settings: ServerSettings) -> None:
    """Refuse to listen beyond loopback in plain HTTP unless told a proxy handles TLS."""
    if _is_loopback(settings.host) or settings.behind_proxy:
        return
    if settings.tls_cert is None or settings.tls_key is None:
        raise InvalidInput(
            f"refusing to listen on {settings.host} without TLS: tokens would cross the network "
            "in clear text. Give --tls-cert and --tls-key, or --behind-proxy when a proxy in "
            "front of Conveyor terminates TLS"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    settings: ServerSettings,
    say: Callable[[str], None],
    show_token: Callable[[str, str], None] = lambda user, token: None,
) -> None:
    """Run the server until SIGTERM/SIGINT; ``say`` prints what the person starting it sees;
    ``show_token(user, token)`` gets the first admin's token on a first start."""
    check_exposure(settings)
    if threading.current_thread() is threading.main_thread():
        # Until the API listens, SIGTERM stops the start the way Ctrl-C does: cleanly.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _require_free(settings.host, settings.port, "the control API")
    os.umask(0o077)  # every file the server writes is its own: 0600, directories 0700
    for line in secure_home(settings.home):
        say(line)
    store = Store.open(settings.home, settings.database_url)
    scheme = "https" if settings.tls_cert else "http"
    console_url = settings.console_url or f"{scheme}://{_display(settings.host)}:{settings.port}"
    proxy = Proxy(
        trusted_proxies=settings.trusted_proxies, websocket_limit=settings.websocket_limit
    )
    if any(ipaddress.ip_address("127.0.0.1") in network for network in proxy.trusted):
        say(
            "warning: --trusted-proxy covers 127.0.0.1, which every app on this machine shares: "
            "an app could send other apps requests with X-Forwarded-* headers of its choosing"
        )
    builder = RuntimeBuilder(settings.home, cache_dir=settings.uv_cache)
    runtime = LocalRuntime(settings.home, proxy, builder=builder)
    background = Background()
    #: environment -> its listener's address, filled as each one listens
    #: environment -> where links to its apps point (--app-url, else its listener)
    urls: dict[str, str] = {}
    #: environment -> its listener's own address
    listeners: dict[str, str] = {}
    mailer = RunMailer(
        store,
        runtime,
        settings.smtp,
        urls,
        submit=background.submit,
        say=say,
        reports=settings.home / "reports",
    )
    services = Services(store, runtime, run_ended=mailer.run_ended)
    # Without --console-url, sign-in redirects from an app go to the console's port on the
    # host the visitor used for the app (a server on 0.0.0.0 is reached by some name).
    gate = ViewerGate(services, settings.console_url, scheme=scheme, port=settings.port)
    proxy.gate = gate.gate()
    runtime.on_repaired = lambda release_id, what: record_repair(services, release_id, what)
    say(f"isolation: {runtime.sandboxing.detail}")
    say(
        f"email of runs: through {settings.smtp.describe()}"
        if settings.smtp
        else "email of runs: off (no --smtp-host)"
    )
    watcher: GitWatcher | None = None
    scheduler: Scheduler | None = None
    sleeper: Sleeper | None = None
    retention = Retention(services, settings.home, settings.retention, bytecode=builder.bytecode)
    daily_gc = DailyGc(retention, say=say)
    # App listeners follow the API's rules: loopback, TLS, or a TLS proxy in front.
    tls = _tls_context(settings)
    try:
        running = _environments(services, settings, say)
        unknown = sorted(set(settings.app_urls) - {e.name for e in running})
        if unknown:
            raise InvalidInput(
                f"--app-url names {', '.join(unknown)}, but this server's environments are "
                f"{', '.join(e.name for e in running)}"
            )
        for environment in running:
            if environment.isolation == "required" and runtime.sandboxing.isolation.value == "none":
                say(
                    f"warning: {environment.name} requires isolation and this server cannot "
                    "sandbox apps: its releases will be refused"
                )
        _first_token(store, settings, scheme, say, show_token)
        proxy.start()

        def listen(environment: Environment) -> None:
            port = proxy.add_listener(
                environment.name,
                settings.host,
                environment.port,
                domain=environment.domain,
                ssl_context=tls,
            )
            listener = f"{scheme}://{_display(settings.host)}:{port}"
            listeners[environment.name] = listener
            urls[environment.name] = settings.app_urls.get(environment.name, listener)

        for environment in running:
            listen(environment)

        def applied(environments: list[Environment]) -> list[str]:
            """Open listeners for environments new to this process; say what waits."""
            notes = []
            known = {e.name: e for e in running}
            for environment in environments:
                before = known.get(environment.name)
                if before is None:
                    listen(environment)
                    running.append(environment)
                    notes.append(f"{environment.name} listens on {urls[environment.name]}")
                    continue
                proxy.set_domain(environment.name, environment.domain)
                if before.port != environment.port:
                    notes.append(
                        f"{environment.name} moves to port {environment.port} when the server "
                        "restarts (its listener keeps serving meanwhile)"
                    )
            return notes

        threading.Thread(
            target=_discover, args=(builder, say), name="conveyor-interpreters", daemon=True
        ).start()
        reaped = runtime.supervisor.reap_orphans()
        if reaped:
            say(f"stopped {len(reaped)} app process(es) a previous server left running")
        report = reconcile(services, say)
        say(
            f"reconciled: {len(report.serving)} live release(s) serving, "
            f"{len(report.interrupted)} interrupted operation(s), "
            f"{len(report.not_serving)} release(s) not serving"
        )
        watcher = GitWatcher(services, settings.git_sources, settings.home, say)
        watcher.start()
        scheduler = Scheduler(services, background.submit, say=say)
        scheduler.start()
        sleeper = Sleeper(runtime)
        sleeper.start()
        daily_gc.start()
        say(f"retention: gc daily keeps {settings.retention.describe()}")
        for source in settings.git_sources:
            say(f"watching {source.repository} (every {source.poll:g} s)")
        app = create_app(
            ApiContext(
                services,
                background,
                urls=urls,
                git_watches=watcher.watches,
                environments_applied=applied,
                environments_file=str(settings.environments_file)
                if settings.environments_file
                else None,
                console=settings.console,
                console_url=settings.console_url,
                smtp_configured=settings.smtp is not None,
                is_app_address=lambda url: _is_app_address(
                    url, [*listeners.values(), *urls.values()], running
                ),
                retention=retention,
            )
        )
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            # The API keeps asyncio's own loop; only the proxy's thread runs uvloop (its speed
            # is the data plane's, and the API's work is not bound by its loop).
            loop="asyncio",
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            timeout_graceful_shutdown=5,
            # A client's address and scheme (sign-in limits, the cookie's Secure flag) come
            # from X-Forwarded-* only when a --trusted-proxy sent them; every app on this
            # machine connects from 127.0.0.1 and could claim any address otherwise.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies) or None,
        )
        server = _Server(config)
        gate.start()
        say(f"Conveyor console on {console_url}/ (API under /api/v1)")
        for name, listener in listeners.items():
            public = f" (links: {urls[name]}/<app>/)" if urls[name] != listener else ""
            say(f"  {name:<6} {listener}/<app>/{public}")
        say("Ctrl-C or SIGTERM stops the server (apps stop with it and start again next time)")
        server.run()
    finally:
        say("stopping: no new operations; waiting for running ones")
        if scheduler is not None:
            scheduler.stop()
        if sleeper is not None:
            sleeper.stop()
        daily_gc.stop()
        if watcher is not None:
            watcher.stop(settings.stop_grace)
        unfinished = background.close(settings.stop_grace)
        if unfinished:
            say(
                f"{len(unfinished)} operation(s) still running; "
                "the next start marks them interrupted"
            )
        proxy.waker = None  # a request from now on wakes nothing
        runtime.supervisor.stop_all()
        proxy.stop()
        gate.stop()
        store.close()
        say("stopped")


def _is_app_address(url: str, urls: list[str], running: list[Environment]) -> bool:
    """Whether ``url`` is on one of this server's listeners: a listener's own address, or a
    host of an environment's domain."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    base = f"{parts.scheme}://{parts.netloc}"
    if base in urls:
        return True
    host = (parts.hostname or "").lower()
    return any(e.domain and host.endswith("." + e.domain) for e in running)


def _tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The TLS context the environments' listeners serve with: the API's certificate."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def _discover(builder: RuntimeBuilder, say: Callable[[str], None]) -> None:
    try:
        found = builder.discover_interpreters()
    except ConveyorError as exc:
        say(f"finding Python interpreters failed: {exc}")
        return
    versions = ", ".join(sorted({i.version for i in found}))
    say(f"Python interpreters for runtimes: {versions or 'none'}")


def _environments(
    services: Services, settings: ServerSettings, say: Callable[[str], None]
) -> list[Environment]:
    """Apply the environments file the server was started with; without one, keep what the
    store has (a file applied with `conveyor apply` stays in force), or write the defaults."""
    if settings.environments_file is not None:
        changes = apply_environments(
            services,
            settings.environments,
            expected=None,
            source=str(settings.environments_file),
            actor="server",
        )
        for change in changes:
            say(f"environments: {change.describe()}")
    else:
        with services.store.transaction() as connection:
            if not catalog.list_environments(connection):
                catalog.save_environments(connection, settings.environments)
    with services.store.transaction() as connection:
        return catalog.list_environments(connection)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM or SIGINT only ends ``run()``: uvicorn would
    raise the signal again afterwards and the process would die before stopping its apps."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: object) -> None:
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _first_token(
    store: Store,
    settings: ServerSettings,
    scheme: str,
    say: Callable[[str], None],
    show_token: Callable[[str, str], None],
) -> None:
    """On a server with no users yet: the starting user becomes its admin, with a token that
    does not expire, written only to their CLI credentials file (0600) and handed to
    ``show_token`` (the CLI prints it only on a terminal, never into a log)."""
    with store.transaction() as connection:
        if users.list_users(connection):
            return
        owner = getpass.getuser()
        users.add_user(connection, owner, admin=True, by="server")
        token_id, token = tokens.create_token(connection, owner, by="server")
        audit.record(connection, "server", "user.add", owner, {"admin": True, "first": True})
        audit.record(connection, "server", "token.create", owner, {"token": token_id})
    server = f"{scheme}://{_display(settings.host)}:{settings.port}"
    path = save_token(server, token)
    say(f"created the first user, {owner} (admin), and saved their API token to {path}")
    show_token(owner, token)


def _display(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104


def _require_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot listen on {host}:{port} for {what}: {exc.strerror}. Is another "
                "Conveyor server running? Stop it, or pick another port with --port"
            ) from None
