"""Who is emailed how an app's runs end in an environment: rules set per environment
(`conveyor email set`) win, one ``on`` at a time, over the bundle's `email:`, which applies
only where schedules are active (services/run_mailer.py sends)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.domain.releases import Release
from conveyor.domain.run_email import EmailRule, When, parse_rules
from conveyor.domain.schedules import ACTIVE
from conveyor.errors import InvalidInput, NotFound
from conveyor.services.context import Services
from conveyor.services.schedules import refuse_unrunnable
from conveyor.storage import audit, catalog, releases, schema
from conveyor.storage.store import now

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


def rules_for(
    connection: Connection, app: str, environment: str, release_id: int | None = None
) -> list[EmailRule]:
    """The rules that apply to a run of ``app`` in ``environment`` now: the bundle's are those
    of release ``release_id``'s bundle (the release that ran), else of the live release's."""
    active = catalog.get_environment(connection, environment).schedules == ACTIVE
    found = _effective(connection, app, environment, active, release_id)[0]
    return [sourced.rule for sourced in found]


def _effective(
    connection: Connection,
    app: str,
    environment: str,
    active: bool,
    release_id: int | None = None,
) -> tuple[list[SourcedRule], list[EmailRule]]:
    own = {
        r["on"]: SourcedRule(EmailRule(tuple(r["to"]), When(r["on"])), f"set by {r['by']}")
        for r in _own(connection, app, environment)
    }
    bundle = _bundle_rules(connection, app, environment, release_id)
    if not active:
        return list(own.values()), [r for r in bundle if r.on.value not in own]
    found = list(own.values())
    found += [SourcedRule(r, "conveyor.yml") for r in bundle if r.on.value not in own]
    return found, []


def _bundle_rules(
    connection: Connection, app: str, environment: str, release_id: int | None
) -> list[EmailRule]:
    if release_id is not None:
        live: Release | None = releases.get_release(connection, release_id)
    else:
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
