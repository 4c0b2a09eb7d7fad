"""Releases, their checks, and the live pointer in the metadata database."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, insert, select, update

from conveyor.domain.releases import (
    CheckKind,
    CheckResult,
    Release,
    ReleaseKind,
    ReleaseState,
    check_transition,
)
from conveyor.errors import Conflict, NotFound
from conveyor.storage import schema
from conveyor.storage.store import new_row_id, now

_T = schema.releases
_B = schema.bundles
#: When gc removed the files of the release's bundle, read beside every release.
_REMOVED = (
    select(_B.c.removed_at).where(_B.c.id == _T.c.bundle).scalar_subquery().label("removed_at")
)


def _select() -> Select[Any]:
    return select(_T, _REMOVED)


def create_release(
    connection: Connection,
    *,
    app: str,
    environment: str,
    bundle_id: str,
    kind: ReleaseKind,
    created_by: str,
) -> Release:
    stamp = now()
    result = connection.execute(
        insert(_T).values(
            app=app,
            environment=environment,
            bundle=bundle_id,
            kind=kind.value,
            state=ReleaseState.PENDING.value,
            created_by=created_by,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    return get_release(connection, new_row_id(result.inserted_primary_key))


def get_release(connection: Connection, release_id: int) -> Release:
    row = connection.execute(_select().where(_T.c.id == release_id)).mappings().first()
    if row is None:
        raise NotFound(f"there is no release {release_id}")
    return _release(row)


def transition(
    connection: Connection, release_id: int, target: ReleaseState, reason: str = ""
) -> Release:
    """Move a release to ``target``; InvalidTransition when the state machine forbids it.
    LIVE is reached only through ``switch_live``."""
    current = get_release(connection, release_id)
    check_transition(release_id, current.state, target)
    if target is ReleaseState.LIVE:
        raise Conflict(f"release {release_id} goes live only by switching the live pointer")
    values: dict[str, Any] = {"state": target.value, "updated_at": now()}
    if reason:
        values["reason"] = reason
    # Compare-and-set on the state, so two writers cannot both move the same release.
    changed = connection.execute(
        update(_T)
        .where(and_(_T.c.id == release_id, _T.c.state == current.state.value))
        .values(values)
    ).rowcount
    if changed != 1:
        raise Conflict(f"release {release_id} changed state while being updated; try again")
    return get_release(connection, release_id)


def live_release(connection: Connection, app: str, environment: str) -> Release | None:
    live = schema.live_releases
    row = (
        connection.execute(
            _select()
            .join(live, live.c.release == _T.c.id)
            .where(and_(live.c.app == app, live.c.environment == environment))
        )
        .mappings()
        .first()
    )
    return _release(row) if row else None


def all_live(connection: Connection) -> list[Release]:
    """Every live release, by app and environment."""
    live = schema.live_releases
    rows = connection.execute(
        _select().join(live, live.c.release == _T.c.id).order_by(live.c.app, live.c.environment)
    ).mappings()
    return [_release(row) for row in rows]


def unfinished(connection: Connection) -> list[Release]:
    """Releases that were on their way (pending, starting, verifying)."""
    rows = connection.execute(
        _select().where(_T.c.state.in_(["pending", "starting", "verifying"])).order_by(_T.c.id)
    ).mappings()
    return [_release(row) for row in rows]


def switch_live(connection: Connection, release_id: int) -> Release | None:
    """Make a verifying release the live one of its (app, environment) and retire the release
    it replaces; return the replaced release. Call inside the transaction that records the
    switch: the pointer, both states and the audit event change together."""
    new = get_release(connection, release_id)
    check_transition(release_id, new.state, ReleaseState.LIVE)
    if not new.verified:
        raise Conflict(f"release {release_id} has not passed its checks; it cannot go live")
    previous = live_release(connection, new.app, new.environment)
    stamp = now()
    live = schema.live_releases
    if previous is not None:
        check_transition(previous.id, previous.state, ReleaseState.RETIRED)
        connection.execute(
            update(_T).where(_T.c.id == previous.id).values(state="retired", updated_at=stamp)
        )
        connection.execute(
            delete(live).where(and_(live.c.app == new.app, live.c.environment == new.environment))
        )
    connection.execute(
        update(_T).where(_T.c.id == release_id).values(state="live", updated_at=stamp)
    )
    connection.execute(
        insert(live).values(
            app=new.app, environment=new.environment, release=release_id, since=stamp
        )
    )
    return previous


def record_steps(connection: Connection, release_id: int, steps: list[tuple[str, float]]) -> None:
    """Store how long each step of the release took, in seconds."""
    rounded = [[name, round(seconds, 3)] for name, seconds in steps]
    connection.execute(update(_T).where(_T.c.id == release_id).values(steps=json.dumps(rounded)))


def history(
    connection: Connection,
    app: str,
    environment: str | None = None,
    limit: int = 100,
    within: Iterable[str] | None = None,
) -> list[Release]:
    """The app's releases, newest first: in ``environment``, or in any of ``within``."""
    query = _select().where(_T.c.app == app)
    if environment is not None:
        query = query.where(_T.c.environment == environment)
    if within is not None:
        query = query.where(_T.c.environment.in_(list(within)))
    rows = connection.execute(query.order_by(_T.c.id.desc()).limit(limit)).mappings()
    return [_release(row) for row in rows]


def record_check(connection: Connection, release_id: int, result: CheckResult) -> None:
    connection.execute(
        insert(schema.checks).values(
            release=release_id,
            kind=result.kind.value,
            passed=result.passed,
            output=result.output,
            created_at=now(),
        )
    )


def checks_of(connection: Connection, release_id: int) -> list[CheckResult]:
    table = schema.checks
    rows = connection.execute(
        select(table).where(table.c.release == release_id).order_by(table.c.id)
    ).mappings()
    return [CheckResult(CheckKind(r["kind"]), r["passed"], r["output"]) for r in rows]


def mark_verified(connection: Connection, release_id: int, required: tuple[str, ...]) -> bool:
    """Set the release verified when every required check kind has passed and none failed."""
    results = checks_of(connection, release_id)
    passed = {r.kind.value for r in results if r.passed}
    failed = [r for r in results if not r.passed]
    if failed or not set(required) <= passed:
        return False
    connection.execute(update(_T).where(_T.c.id == release_id).values(verified=True))
    return True


_IN_PROGRESS = (ReleaseState.PENDING, ReleaseState.STARTING, ReleaseState.VERIFYING)


def _latest_per_environment(connection: Connection, bundle_id: str) -> dict[str, list[Release]]:
    rows = connection.execute(
        _select().where(_T.c.bundle == bundle_id).order_by(_T.c.id.desc())
    ).mappings()
    by_environment: dict[str, list[Release]] = {}
    for row in rows:
        by_environment.setdefault(row["environment"], []).append(_release(row))
    return by_environment


def _verdict(newest_first: list[Release]) -> Release | None:
    """The release whose outcome decides verification: the latest one that finished."""
    return next((r for r in newest_first if r.state not in _IN_PROGRESS), None)


def verified_in(connection: Connection, bundle_id: str) -> frozenset[str]:
    """Environments where the bundle's latest finished release there passed its checks: a
    later failing release of the same bundle takes a verification back."""
    return frozenset(
        environment
        for environment, newest_first in _latest_per_environment(connection, bundle_id).items()
        if (verdict := _verdict(newest_first)) is not None and verdict.verified
    )


def released_by(connection: Connection, bundle_id: str) -> frozenset[str]:
    """Everyone who released the bundle into any environment."""
    rows = connection.execute(
        select(_T.c.created_by).where(_T.c.bundle == bundle_id).distinct()
    ).scalars()
    return frozenset(rows)


def was_live_in(connection: Connection, bundle_id: str) -> frozenset[str]:
    rows = connection.execute(
        select(_T.c.environment).where(
            and_(_T.c.bundle == bundle_id, _T.c.state.in_(["live", "retired"]))
        )
    ).scalars()
    return frozenset(rows)


def why_not_verified(connection: Connection, bundle_id: str, environment: str) -> str | None:
    """Why ``bundle_id`` is not verified in ``environment``, from its latest finished release
    there (or the one still running); None when it is verified or was never released there."""
    newest_first = _latest_per_environment(connection, bundle_id).get(environment, [])
    if not newest_first:
        return None
    release = _verdict(newest_first) or newest_first[0]
    if release.verified:
        return None
    failed = [c.kind.value for c in checks_of(connection, release.id) if not c.passed]
    if failed:
        kinds = " and ".join(failed)
        return f"its {kinds} check{'s' if len(failed) > 1 else ''} failed in release {release.id}"
    if release.state in _IN_PROGRESS:
        return f"its checks are still running in release {release.id} ({release.state})"
    return f"release {release.id} failed: {release.reason or 'no reason recorded'}"


def _release(row: Any) -> Release:
    return Release(
        id=row["id"],
        app=row["app"],
        environment=row["environment"],
        bundle_id=row["bundle"],
        kind=ReleaseKind(row["kind"]),
        state=ReleaseState(row["state"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        reason=row["reason"],
        verified=row["verified"],
        steps=tuple((name, seconds) for name, seconds in json.loads(row["steps"])),
        files_removed_at=row.get("removed_at"),
    )
