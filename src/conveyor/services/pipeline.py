"""Deploy, promote, approve and roll back: the pipeline's rules applied to what the store knows,
then one release path for all three."""

from __future__ import annotations

from sqlalchemy import Connection

from conveyor.domain.environments import Environment
from conveyor.domain.policy import Action, BundleFacts, authorize, bundle_alias, no_promotions
from conveyor.domain.releases import Release, ReleaseKind, ReleaseState
from conveyor.errors import Conflict, InvalidInput, NotFound, PolicyViolation
from conveyor.services.context import Services
from conveyor.services.data_check import require_safe, sandboxed
from conveyor.services.releasing import Outcome, Started, run_release
from conveyor.storage import audit, catalog, releases, users


def deploy(
    services: Services,
    app: str,
    bundle_ref: str,
    environment: str,
    actor: str,
    started: Started | None = None,
) -> Outcome:
    """Release a bundle straight into an environment that takes direct deploys."""
    target, bundle, _ = _prepare(services, app, bundle_ref, environment, Action.DEPLOY, actor)
    return run_release(
        services,
        environment=target,
        bundle=bundle,
        kind=ReleaseKind.DEPLOY,
        actor=actor,
        started=started,
    )


def promote(
    services: Services,
    app: str,
    actor: str,
    to: str | None = None,
    bundle_ref: str | None = None,
    started: Started | None = None,
) -> Outcome | str:
    """Release into ``to`` (default: the next environment that has something to take) the
    bundle live in its upstream environment, or ``bundle_ref``; it must be verified there.
    Returns a message instead of an Outcome when that bundle is already live in ``to``."""
    with services.store.transaction() as connection:
        _require_app(connection, app)
        target = catalog.get_environment(connection, to) if to else _next_target(connection, app)
        upstream = target.policy.promotes_from
        if upstream is None:
            raise no_promotions(target)
        if bundle_ref is None:
            live_upstream = releases.live_release(connection, app, upstream)
            if live_upstream is None:
                raise PolicyViolation(
                    f"nothing of {app} is live in {upstream}, so there is nothing to promote to "
                    f"{target.name}; release it to {upstream} first."
                )
            bundle_ref = live_upstream.bundle_id
        live_there = releases.live_release(connection, app, target.name)
    if live_there is not None and live_there.bundle_id.startswith(bundle_ref):
        return (
            f"bundle {bundle_alias(live_there.bundle_id)} of {app} is already live in "
            f"{target.name} (release {live_there.id}); nothing to do"
        )
    target, bundle, _ = _prepare(services, app, bundle_ref, target.name, Action.PROMOTE, actor)
    return run_release(
        services,
        environment=target,
        bundle=bundle,
        kind=ReleaseKind.PROMOTE,
        actor=actor,
        started=started,
    )


def rollback(
    services: Services,
    app: str,
    environment: str,
    actor: str,
    to_release: int | None = None,
    started: Started | None = None,
) -> Outcome:
    """Release again, in the same environment, the bundle of an earlier live release (by
    default the one live before the current one)."""
    with services.store.transaction() as connection:
        _require_app(connection, app)
        catalog.get_environment(connection, environment)
        if to_release is not None:
            earlier = releases.get_release(connection, to_release)
            if (earlier.app, earlier.environment) != (app, environment):
                raise InvalidInput(
                    f"release {to_release} is of {earlier.app} in {earlier.environment}, not of "
                    f"{app} in {environment}"
                )
        else:
            current = releases.live_release(connection, app, environment)
            candidates = [
                r
                for r in releases.history(connection, app, environment, limit=1000)
                if r.state is ReleaseState.RETIRED
                and (current is None or r.bundle_id != current.bundle_id)
            ]
            if not candidates:
                raise NotFound(
                    f"{app} has no earlier live release in {environment} to roll back to"
                )
            # The previous bundle, or nothing: never silently an older one (its files removed
            # by gc, the rollback says so below).
            earlier = candidates[0]
        if earlier.files_removed_at is not None:
            raise Conflict(_removed_by_gc(earlier))
    target, bundle, _ = _prepare(
        services, app, earlier.bundle_id, environment, Action.ROLLBACK, actor
    )
    return run_release(
        services,
        environment=target,
        bundle=bundle,
        kind=ReleaseKind.ROLLBACK,
        actor=actor,
        started=started,
    )


def approve(
    services: Services,
    app: str,
    environment: str,
    bundle_ref: str | None,
    actor: str,
    comment: str = "",
) -> str:
    """Sign off a bundle (default: the one live in the upstream environment) for an
    environment. Returns the approved bundle id."""
    with services.store.transaction() as connection:
        _require_app(connection, app)
        target = catalog.get_environment(connection, environment)
        if bundle_ref is None:
            upstream = target.policy.promotes_from
            live = releases.live_release(connection, app, upstream) if upstream else None
            if live is None:
                raise InvalidInput(
                    f"name the bundle to approve: nothing of {app} is live upstream of "
                    f"{environment}"
                )
            bundle_ref = live.bundle_id
        bundle = catalog.get_bundle(connection, app, bundle_ref)
        catalog.add_approval(
            connection,
            app=app,
            environment=environment,
            bundle_id=bundle["id"],
            by=actor,
            comment=comment,
        )
        audit.record(
            connection,
            actor,
            "bundle.approve",
            f"{app}/{environment}",
            {"bundle": bundle["id"], "comment": comment},
        )
    return str(bundle["id"])


def facts_about(
    connection: Connection, app: str, bundle_id: str, actor: str | None = None
) -> BundleFacts:
    """What the policy needs to know about a bundle, read from the store; ``actor`` is who is
    releasing it now (a deployer too)."""
    bundle = catalog.get_bundle(connection, app, bundle_id)
    environments = catalog.list_environments(connection)
    why = {}
    for environment in environments:
        reason = releases.why_not_verified(connection, bundle["id"], environment.name)
        if reason is not None:
            why[environment.name] = reason
    return BundleFacts(
        app=app,
        bundle_id=bundle["id"],
        deployers=frozenset(
            {bundle["uploaded_by"], *releases.released_by(connection, bundle["id"])}
            | ({actor} if actor else set())
        ),
        verified_in=releases.verified_in(connection, bundle["id"]),
        not_verified_because=why,
        approvals=catalog.approvals_of(connection, bundle["id"]),
        was_live_in=releases.was_live_in(connection, bundle["id"]),
        approvers={e.name: users.approvers(connection, e.name) for e in environments},
    )


def _prepare(
    services: Services, app: str, bundle_ref: str, environment: str, action: Action, actor: str
) -> tuple[Environment, dict[str, object], BundleFacts]:
    with services.store.transaction() as connection:
        _require_app(connection, app)
        target = catalog.get_environment(connection, environment)
        bundle = catalog.get_bundle(connection, app, bundle_ref)
        facts = facts_about(connection, app, bundle["id"], actor)
    authorize(action, target, facts)
    # Read-only data connections must be shown unable to write, now.
    require_safe(target, lambda line: None, sandboxed=sandboxed(services))
    return target, bundle, facts


def promotion_target(services: Services, app: str, to: str | None) -> str:
    """The environment a promotion of ``app`` goes to: ``to``, else the next one that has
    something new waiting upstream."""
    if to is not None:
        return to
    with services.store.transaction() as connection:
        _require_app(connection, app)
        return _next_target(connection, app).name


def _next_target(connection: Connection, app: str) -> Environment:
    for environment in catalog.list_environments(connection):
        upstream = environment.policy.promotes_from
        if upstream is None:
            continue
        source = releases.live_release(connection, app, upstream)
        here = releases.live_release(connection, app, environment.name)
        if source is not None and (here is None or here.bundle_id != source.bundle_id):
            return environment
    raise Conflict(
        f"nothing of {app} is waiting for promotion: every environment already runs what its "
        f"upstream runs; name one with --to"
    )


def _removed_by_gc(release: Release) -> str:
    return (
        f"release {release.id}'s files were removed by `conveyor gc` on "
        f"{(release.files_removed_at or '')[:10]}, so it cannot be rolled back to; `conveyor "
        f"history {release.app} --env {release.environment}` shows the releases that can be "
        f"(the live one and the last few). Deploy the app again from its source instead"
    )


def _require_app(connection: Connection, app: str) -> None:
    if not catalog.app_exists(connection, app):
        apps = ", ".join(catalog.list_apps(connection)) or "none yet"
        raise NotFound(f"there is no app {app!r} (apps: {apps}); deploy it first")
