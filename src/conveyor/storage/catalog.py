"""Environments, apps, bundles and approvals in the metadata database."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from conveyor.domain.access import Role
from conveyor.domain.environments import DataConnection, Environment, Policy
from conveyor.domain.policy import Approval
from conveyor.domain.viewers import access_from_json
from conveyor.errors import Conflict, InvalidInput, NotFound
from conveyor.storage import schema
from conveyor.storage.store import now


def save_environments(connection: Connection, environments: Iterable[Environment]) -> None:
    """Insert or update environments by name."""
    table = schema.environments
    for environment in environments:
        values = {
            "position": environment.position,
            "port": environment.port,
            "config_name": environment.config_name,
            "direct_deploys": environment.policy.direct_deploys,
            "promotes_from": environment.policy.promotes_from,
            "approvals": environment.policy.approvals,
            "approver_not_deployer": environment.policy.approver_not_deployer,
            "data": json.dumps([dataclasses.asdict(c) for c in environment.data]),
            "outputs": environment.outputs,
            "variables": json.dumps([list(v) for v in environment.variables]),
            "secrets": json.dumps([list(v) for v in environment.secrets]),
            "default_roles": json.dumps([str(r) for r in environment.roles_for_new_users]),
            "isolation": environment.isolation,
            "domain": environment.domain,
            "access": environment.access.to_json(),
            "schedules": environment.schedules,
            "sleep_after": environment.sleep_after,
        }
        exists = connection.execute(
            select(table.c.name).where(table.c.name == environment.name)
        ).first()
        if exists:
            connection.execute(update(table).where(table.c.name == environment.name).values(values))
        else:
            connection.execute(insert(table).values(name=environment.name, **values))


def list_environments(connection: Connection) -> list[Environment]:
    rows = connection.execute(
        select(schema.environments).order_by(schema.environments.c.position)
    ).mappings()
    return [_environment(row) for row in rows]


def get_environment(connection: Connection, name: str) -> Environment:
    row = (
        connection.execute(select(schema.environments).where(schema.environments.c.name == name))
        .mappings()
        .first()
    )
    if row is None:
        names = ", ".join(e.name for e in list_environments(connection)) or "none"
        raise NotFound(f"there is no environment {name!r} (environments: {names})")
    return _environment(row)


def _environment(row: Any) -> Environment:
    return Environment(
        name=row["name"],
        position=row["position"],
        port=row["port"],
        config_name=row["config_name"],
        policy=Policy(
            direct_deploys=row["direct_deploys"],
            promotes_from=row["promotes_from"],
            approvals=row["approvals"],
            approver_not_deployer=row["approver_not_deployer"],
        ),
        data=tuple(DataConnection(**c) for c in json.loads(row["data"] or "[]")),
        outputs=row["outputs"],
        variables=tuple((str(n), str(v)) for n, v in json.loads(row["variables"] or "[]")),
        secrets=tuple((str(n), str(v)) for n, v in json.loads(row["secrets"] or "[]")),
        default_roles=tuple(Role(r) for r in json.loads(row["default_roles"] or "[]")),
        isolation=row["isolation"] or "preferred",
        domain=row["domain"],
        access=access_from_json(row["access"]),
        schedules=row["schedules"] or "",
        sleep_after=row["sleep_after"] or "",
    )


def ensure_app(connection: Connection, name: str) -> bool:
    """Create the app if it is new; True when it was created."""
    exists = connection.execute(
        select(schema.apps.c.name).where(schema.apps.c.name == name)
    ).first()
    if exists:
        return False
    connection.execute(insert(schema.apps).values(name=name, created_at=now()))
    return True


def list_apps(connection: Connection) -> list[str]:
    return list(
        connection.execute(select(schema.apps.c.name).order_by(schema.apps.c.name)).scalars()
    )


def app_exists(connection: Connection, name: str) -> bool:
    return (
        connection.execute(select(schema.apps.c.name).where(schema.apps.c.name == name)).first()
        is not None
    )


def save_bundle(
    connection: Connection,
    *,
    bundle_id: str,
    app: str,
    blob: str,
    size: int,
    manifest: dict[str, Any],
    provenance: dict[str, Any],
    uploaded_by: str,
) -> bool:
    """Record a bundle; True when it is new. The same id again is a no-op (idempotent)."""
    table = schema.bundles
    existing = connection.execute(select(table.c.app).where(table.c.id == bundle_id)).first()
    if existing is not None:
        if existing.app != app:
            raise Conflict(f"bundle {bundle_id[:10]} belongs to app {existing.app!r}, not {app!r}")
        return False
    connection.execute(
        insert(table).values(
            id=bundle_id,
            app=app,
            blob=blob,
            size=size,
            manifest=json.dumps(manifest, sort_keys=True),
            provenance=json.dumps(provenance, sort_keys=True),
            uploaded_by=uploaded_by,
            created_at=now(),
        )
    )
    return True


def get_bundle(connection: Connection, app: str, ref: str) -> dict[str, Any]:
    """A bundle of ``app`` by full id or by a prefix of at least 6 hex digits (the alias).
    Only hex digits are accepted, so nothing in ``ref`` acts as a LIKE wildcard."""
    if len(ref) < 6:
        raise InvalidInput(f"bundle {ref!r} is too short; give at least 6 hex digits of its id")
    prefix = ref.lower()
    if len(prefix) > 64 or not all(c in "0123456789abcdef" for c in prefix):
        raise InvalidInput(
            f"bundle {ref!r} is not a bundle id; give its id or at least its first 6 hex digits "
            f"(0-9, a-f), e.g. as `conveyor history {app}` shows them"
        )
    table = schema.bundles
    rows = (
        connection.execute(
            select(table).where(and_(table.c.app == app, table.c.id.startswith(prefix)))
        )
        .mappings()
        .all()
    )
    if not rows:
        raise NotFound(f"app {app!r} has no bundle {ref!r}; `conveyor history {app}` lists them")
    if len(rows) > 1:
        raise InvalidInput(f"{ref!r} matches {len(rows)} bundles of {app!r}; give more digits")
    row = dict(rows[0])
    row["manifest"] = json.loads(row["manifest"])
    row["provenance"] = json.loads(row["provenance"])
    return row


def bundles_of(connection: Connection, app: str) -> list[dict[str, Any]]:
    """The app's bundles, newest first: id, when, and the git branch and commit they came
    from when known."""
    table = schema.bundles
    rows = connection.execute(
        select(table.c.id, table.c.created_at, table.c.provenance)
        .where(table.c.app == app)
        .order_by(table.c.created_at.desc())
    ).all()
    found = []
    for bundle_id, created_at, provenance in rows:
        git = (json.loads(provenance) or {}).get("git") or {}
        found.append(
            {
                "id": bundle_id,
                "created_at": created_at,
                "branch": git.get("branch"),
                "commit": (git.get("commit") or "")[:10] or None,
            }
        )
    return found


def add_approval(
    connection: Connection, *, app: str, environment: str, bundle_id: str, by: str, comment: str
) -> None:
    table = schema.approvals
    already = connection.execute(
        select(table.c.id).where(
            and_(table.c.bundle == bundle_id, table.c.environment == environment, table.c.by == by)
        )
    ).first()
    if already:
        raise Conflict(
            f"{by} already approved bundle {bundle_id[:10]} for {environment}; one approval per "
            f"person counts"
        )
    connection.execute(
        insert(table).values(
            app=app,
            environment=environment,
            bundle=bundle_id,
            by=by,
            comment=comment,
            created_at=now(),
        )
    )


def approvals_of(connection: Connection, bundle_id: str) -> tuple[Approval, ...]:
    table = schema.approvals
    rows = connection.execute(
        select(table).where(table.c.bundle == bundle_id).order_by(table.c.id)
    ).mappings()
    return tuple(Approval(r["bundle"], r["environment"], r["by"], r["comment"]) for r in rows)


def remove_environment(connection: Connection, name: str) -> None:
    """Remove an environment that nothing was ever released to."""
    used = any(
        connection.execute(
            select(table.c.environment).where(table.c.environment == name).limit(1)
        ).first()
        is not None
        for table in (schema.releases, schema.approvals, schema.variables)
    )
    if used:
        raise Conflict(
            f"environment {name} has releases, approvals or variables, so it stays (its history "
            "is kept); keep it in the file"
        )
    # Roles held there go with it: they grant nothing once it is gone.
    connection.execute(delete(schema.grants).where(schema.grants.c.environment == name))
    connection.execute(delete(schema.environments).where(schema.environments.c.name == name))


def get_setting(connection: Connection, key: str) -> str | None:
    row = connection.execute(
        select(schema.settings.c.value).where(schema.settings.c.key == key)
    ).first()
    return None if row is None else str(row[0])


def set_setting(connection: Connection, key: str, value: str) -> None:
    table = schema.settings
    if get_setting(connection, key) is None:
        connection.execute(insert(table).values(key=key, value=value))
    else:
        connection.execute(update(table).where(table.c.key == key).values(value=value))
