"""What every API handler works with: the services, the background operations, and what the
server process knows about itself (its listeners' URLs, its environments file, git watches)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from conveyor.api.background import Background
from conveyor.console.settings import ConsoleSettings
from conveyor.domain.environments import Environment
from conveyor.services.context import Services
from conveyor.services.drift import RecentDrift
from conveyor.services.git_driven import Watch
from conveyor.services.retention import Retention


@dataclass
class ApiContext:
    services: Services
    background: Background
    max_bundle_bytes: int = 512 * 2**20
    #: environment -> the public base URL of its listener, for links in answers
    urls: dict[str, str] = dataclasses.field(default_factory=dict)
    #: What git-driven mode last did for each watched branch.
    git_watches: Callable[[], list[Watch]] = list
    #: Called after environments were applied (the server opens listeners for new ones).
    environments_applied: Callable[[list[Environment]], list[str]] = lambda environments: []
    #: The environments file the server was started with: while it is in charge, the API
    #: changes nothing it manages.
    environments_file: str | None = None
    #: How the console signs people in (sessions, OIDC).
    console: ConsoleSettings = dataclasses.field(default_factory=ConsoleSettings)
    #: The console's public address when given (`--console-url`), else None.
    console_url: str | None = None
    #: Whether a URL is an app's address on one of this server's listeners (where the console
    #: may send someone back to after signing in).
    is_app_address: Callable[[str], bool] = lambda url: False
    #: Whether the server was given an SMTP server to email through (`--smtp-host`).
    smtp_configured: bool = False
    #: Which live releases' runtimes drifted, checked now and then for the board.
    drift: RecentDrift = dataclasses.field(default_factory=RecentDrift)
    #: What `conveyor gc` keeps and removes on this server; None where none is set up.
    retention: Retention | None = None


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]
