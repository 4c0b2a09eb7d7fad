"""Who may view an app in an environment (the proxy asks, per request), and how much it is
used (the proxy counts). An app's own setting wins over its environment's default (the
environments file's `access:`), which defaults to public."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select, update

from conveyor.domain.viewers import ViewerAccess, access_from_json
from conveyor.errors import NotFound
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, schema
from conveyor.storage.store import now

_A = schema.app_access


def access_of(services: Services, app: str, environment: str) -> ViewerAccess:
    with services.store.transaction() as connection:
        row = connection.execute(
            select(_A.c.access).where(and_(_A.c.app == app, _A.c.environment == environment))
        ).first()
        if row is not None:
            return access_from_json(row[0])
        return catalog.get_environment(connection, environment).access


def set_access(
    services: Services, app: str, environment: str, access: ViewerAccess, actor: str
) -> None:
    with services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}; deploy it first")
        key = and_(_A.c.app == app, _A.c.environment == environment)
        values = {"access": access.to_json(), "updated_by": actor, "updated_at": now()}
        if connection.execute(select(_A.c.app).where(key)).first() is None:
            connection.execute(insert(_A).values(app=app, environment=environment, **values))
        else:
            connection.execute(update(_A).where(key).values(**values))
        audit.record(
            connection, actor, "app.access", f"{app}/{environment}", {"access": access.describe()}
        )


def access_table(services: Services, app: str, environments: Iterable[str]) -> dict[str, str]:
    """environment -> who may view ``app`` there, for people."""
    return {name: access_of(services, app, name).describe() for name in environments}


# --- usage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One page view the proxy saw: who (a user name, or an anonymous visitor's cookie) and
    in which browser session."""

    app: str
    environment: str
    hour: str  # 2026-11-30T14
    viewer: str
    session: str


def record_usage(services: Services, visits: list[Visit]) -> None:
    """Add page views, with their viewers and sessions kept only as HMACs."""
    if not visits:
        return
    keys = services.store.keys
    secret = hmac.new(keys.audit_key, b"conveyor usage v1", hashlib.sha256).digest()

    def keyed(text: str) -> str:
        return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()

    counts: dict[tuple[str, str, str], int] = {}
    seen: set[tuple[str, str, str, str, str]] = set()
    for visit in visits:
        where = (visit.app, visit.environment, visit.hour)
        counts[where] = counts.get(where, 0) + 1
        seen.add((*where, "viewer", keyed(visit.viewer)))
        seen.add((*where, "session", keyed(visit.session)))
    table, seen_table = schema.usage, schema.usage_seen
    with services.store.transaction() as connection:
        for (app, environment, hour), visits_count in counts.items():
            key = and_(table.c.app == app, table.c.environment == environment, table.c.hour == hour)
            current = connection.execute(select(table.c.visits).where(key)).scalar_one_or_none()
            if current is None:
                connection.execute(
                    insert(table).values(
                        app=app, environment=environment, hour=hour, visits=visits_count
                    )
                )
            else:
                connection.execute(update(table).where(key).values(visits=current + visits_count))
        for app, environment, hour, kind, key_hash in seen:
            exists = connection.execute(
                select(seen_table.c.key).where(
                    and_(
                        seen_table.c.app == app,
                        seen_table.c.environment == environment,
                        seen_table.c.hour == hour,
                        seen_table.c.kind == kind,
                        seen_table.c.key == key_hash,
                    )
                )
            ).first()
            if exists is None:
                connection.execute(
                    insert(seen_table).values(
                        app=app, environment=environment, hour=hour, kind=kind, key=key_hash
                    )
                )


@dataclass(frozen=True)
class DayUsage:
    day: str  # YYYY-MM-DD, UTC
    visits: int
    viewers: int
    sessions: int


@dataclass(frozen=True)
class Usage:
    environment: str
    visits: int
    viewers: int
    sessions: int
    #: The last ``DAYS`` days with visits, newest first.
    days: list[DayUsage]


#: How many days of usage an app's page shows, day by day.
DAYS = 14


def usage_of(services: Services, app: str, environments: Iterable[str]) -> list[Usage]:
    """Visits, distinct viewers and sessions of ``app`` in each environment: in all, and day
    by day for the last ``DAYS`` days."""
    table, seen = schema.usage, schema.usage_seen
    since = (datetime.now(UTC) - timedelta(days=DAYS - 1)).strftime("%Y-%m-%d")
    found = []
    with services.store.transaction() as connection:
        for environment in environments:
            where = and_(table.c.app == app, table.c.environment == environment)
            seen_where = and_(seen.c.app == app, seen.c.environment == environment)
            total = connection.execute(select(func.sum(table.c.visits)).where(where)).scalar()

            def distinct(kind: str, where: Any = seen_where) -> int:
                return int(
                    connection.execute(
                        select(func.count(func.distinct(seen.c.key))).where(
                            and_(where, seen.c.kind == kind)
                        )
                    ).scalar_one()
                )

            visits: dict[str, int] = {}
            for hour, count in connection.execute(
                select(table.c.hour, table.c.visits).where(and_(where, table.c.hour >= since))
            ).all():
                visits[str(hour)[:10]] = visits.get(str(hour)[:10], 0) + int(count)
            keys: dict[tuple[str, str], set[str]] = {}
            for hour, kind, key in connection.execute(
                select(seen.c.hour, seen.c.kind, seen.c.key).where(
                    and_(seen_where, seen.c.hour >= since)
                )
            ).all():
                keys.setdefault((str(hour)[:10], str(kind)), set()).add(str(key))
            days = [
                DayUsage(
                    day,
                    visits[day],
                    len(keys.get((day, "viewer"), ())),
                    len(keys.get((day, "session"), ())),
                )
                for day in sorted(visits, reverse=True)
            ]
            found.append(
                Usage(
                    environment,
                    int(total or 0),
                    distinct("viewer"),
                    distinct("session"),
                    days,
                )
            )
    return found
