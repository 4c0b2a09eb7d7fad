"""The pipeline board: apps x environments, each cell what is live there and what the person
looking may do about it. Actions are offered only where the user's roles allow them; where
the pipeline's rules would refuse one, the reason is given instead (the same rules the API
applies when the action is asked for)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection

from conveyor.domain.access import Permission, User
from conveyor.domain.environments import Environment
from conveyor.domain.policy import Action, authorize, bundle_alias
from conveyor.domain.releases import Release, ReleaseState
from conveyor.errors import PolicyViolation
from conveyor.services.context import Services
from conveyor.services.pipeline import facts_about
from conveyor.services.runs import failure_note
from conveyor.storage import catalog, releases


@dataclass(frozen=True)
class Offer:
    """An action the user may take in a cell: enabled, or with why the rules refuse it."""

    action: str  # promote, approve, rollback
    label: str
    bundle: str | None = None
    refused: str | None = None
    #: For a rollback: the earlier release whose bundle comes back.
    release: int | None = None


@dataclass(frozen=True)
class BoardCell:
    app: str
    environment: str
    release: Release | None = None
    alias: str | None = None
    branch: str | None = None
    commit: str | None = None
    checks: tuple[tuple[str, bool], ...] = ()
    #: (approvals counted, approvals the environment asks for), when it asks for any.
    approvals: tuple[int, int] | None = None
    #: The bundle waiting upstream to come here, with its approvals when any are asked for.
    waiting: str | None = None
    waiting_approvals: tuple[int, int] | None = None
    #: What drifted in the live release's runtime (`conveyor drift`), when it did.
    drifted: str | None = None
    #: The live bundle differs from the one live in the environment it promotes from.
    differs: bool = False
    #: The newest release here failed (and why), when it is not the live one.
    failed: str | None = None
    degraded: str | None = None
    repaired: str | None = None
    #: A report's or job's latest run failed (the previous output is still served).
    run_failed: str | None = None
    #: Asleep after a while without requests (the next one wakes it).
    sleeping: bool = False
    offers: tuple[Offer, ...] = ()
    #: For an empty cell: how something gets here.
    how: str = ""


@dataclass(frozen=True)
class Board:
    environments: list[Environment]
    apps: list[str]
    cells: dict[tuple[str, str], BoardCell] = field(default_factory=dict)


def board(
    services: Services,
    user: User,
    apps: list[str] | None = None,
    drifted: dict[int, str] | None = None,
) -> Board:
    """What ``user`` sees: every app, the environments they have a role in. ``drifted``:
    release id -> what drifted in its runtime (services/drift.RecentDrift)."""
    drifted = drifted or {}
    with services.store.transaction() as connection:
        environments = [
            e for e in catalog.list_environments(connection) if user.can(Permission.VIEW, e.name)
        ]
        names = apps if apps is not None else catalog.list_apps(connection)
        cells = {
            (app, environment.name): _cell(services, connection, user, app, environment, drifted)
            for app in names
            for environment in environments
        }
    return Board(environments, names, cells)


def _cell(
    services: Services,
    connection: Connection,
    user: User,
    app: str,
    environment: Environment,
    drifted: dict[int, str],
) -> BoardCell:
    live = releases.live_release(connection, app, environment.name)
    newest = releases.history(connection, app, environment.name, limit=1)
    failed = (
        f"release {newest[0].id} failed: {newest[0].reason}"
        if newest and newest[0].state is ReleaseState.FAILED
        else None
    )
    offers = _offers(connection, user, app, environment, live)
    upstream = environment.policy.promotes_from
    candidate = releases.live_release(connection, app, upstream) if upstream else None
    # What waits upstream is shown to who may see upstream, or act on it here.
    waiting = (
        candidate.bundle_id
        if candidate is not None
        and (live is None or live.bundle_id != candidate.bundle_id)
        and (upstream is not None and user.can(Permission.VIEW, upstream) or offers)
        else None
    )
    waiting_alias = bundle_alias(waiting) if waiting else None
    waiting_approvals = _approvals(connection, app, waiting, environment) if waiting else None
    if live is None:
        upstream = environment.policy.promotes_from
        how = (
            f"Promote from {upstream}"
            if upstream and not environment.policy.direct_deploys
            else f"conveyor deploy PATH --env {environment.name}"
            + (f", or promote from {upstream}" if upstream else "")
        )
        return BoardCell(
            app,
            environment.name,
            failed=failed,
            offers=offers,
            how=how,
            waiting=waiting_alias,
            waiting_approvals=waiting_approvals,
        )
    bundle = catalog.get_bundle(connection, app, live.bundle_id)
    git = (bundle["provenance"] or {}).get("git") or {}
    checks = tuple((str(c.kind), c.passed) for c in releases.checks_of(connection, live.id))
    return BoardCell(
        app,
        environment.name,
        release=live,
        alias=bundle_alias(live.bundle_id),
        branch=git.get("branch"),
        commit=(git.get("commit") or "")[:10] or None,
        checks=checks,
        approvals=_approvals(connection, app, live.bundle_id, environment),
        differs=candidate is not None and candidate.bundle_id != live.bundle_id,
        drifted=drifted.get(live.id),
        failed=failed,
        degraded=services.runtime.degraded(live.id),
        repaired=services.runtime.repaired(live.id),
        run_failed=failure_note(connection, app, environment.name),
        sleeping=services.runtime.asleep(live.id),
        offers=offers,
        waiting=waiting_alias,
        waiting_approvals=waiting_approvals,
    )


def _approvals(
    connection: Connection, app: str, bundle_id: str, environment: Environment
) -> tuple[int, int] | None:
    """(approvals of the bundle that count in the environment, approvals it asks for)."""
    if environment.policy.approvals <= 0:
        return None
    facts = facts_about(connection, app, bundle_id)
    counted = {
        a.by
        for a in facts.approvals
        if a.environment == environment.name
        and a.by in facts.approvers.get(environment.name, frozenset())
    }
    return len(counted), environment.policy.approvals


def _offers(
    connection: Connection, user: User, app: str, environment: Environment, live: Release | None
) -> tuple[Offer, ...]:
    offers: list[Offer] = []
    upstream = environment.policy.promotes_from
    candidate = releases.live_release(connection, app, upstream) if upstream else None
    if (
        candidate is not None
        and (live is None or live.bundle_id != candidate.bundle_id)
        and user.can(Permission.PROMOTE, environment.name)
    ):
        facts = facts_about(connection, app, candidate.bundle_id, user.name)
        try:
            authorize(Action.PROMOTE, environment, facts)
            refused = None
        except PolicyViolation as exc:
            refused = str(exc)
        offers.append(
            Offer(
                "promote",
                f"Promote to {environment.name}",
                candidate.bundle_id,
                refused,
            )
        )
    if (
        candidate is not None
        and environment.policy.approvals > 0
        and (live is None or live.bundle_id != candidate.bundle_id)
        and user.can(Permission.APPROVE, environment.name)
    ):
        done = any(
            a.by == user.name and a.environment == environment.name
            for a in catalog.approvals_of(connection, candidate.bundle_id)
        )
        offers.append(
            Offer(
                "approve",
                f"Approve {bundle_alias(candidate.bundle_id)} for {environment.name}",
                candidate.bundle_id,
                f"you approved bundle {bundle_alias(candidate.bundle_id)} for "
                f"{environment.name} already"
                if done
                else None,
            )
        )
    if live is not None and user.can(Permission.ROLL_BACK, environment.name):
        earlier = [
            r
            for r in releases.history(connection, app, environment.name, limit=200)
            if r.state is ReleaseState.RETIRED and r.bundle_id != live.bundle_id
        ]
        if earlier:
            offers.append(
                Offer(
                    "rollback",
                    f"Roll back to {bundle_alias(earlier[0].bundle_id)}",
                    earlier[0].bundle_id,
                    release=earlier[0].id,
                )
            )
    return tuple(offers)
