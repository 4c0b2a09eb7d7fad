"""The one path every release takes (deploy, promote, rollback): start beside the live release,
check it on its own address, and only then switch traffic, in the transaction that records the
switch. A failure at any step before the switch leaves the old release serving."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from conveyor.domain.environments import Environment
from conveyor.domain.operations import OperationKind, OperationState
from conveyor.domain.policy import bundle_alias
from conveyor.domain.releases import Release, ReleaseKind, ReleaseState
from conveyor.domain.variables import name_problem
from conveyor.errors import Conflict, ConveyorError
from conveyor.runtime.interface import Instance, ReleasePlan
from conveyor.services.context import Services
from conveyor.storage import app_users, audit, catalog, operations, releases, variables

#: Called with the operation id once a release operation has started.
Started = Callable[[int], None]


@dataclass(frozen=True)
class Outcome:
    """How a release operation ended. ``release`` is the new release (live or failed)."""

    operation_id: int
    release: Release
    replaced: Release | None
    live: bool
    message: str


def run_release(
    services: Services,
    *,
    environment: Environment,
    bundle: dict[str, Any],
    kind: ReleaseKind,
    actor: str,
    started: Started | None = None,
) -> Outcome:
    """Release ``bundle`` into ``environment`` under an operation that holds (app, environment)
    for its whole duration. Policy has been checked by the caller. ``started`` is called with
    the operation id as soon as the operation holds the pair (the API answers then)."""
    store = services.store
    app = str(bundle["app"])
    operation = operations.start_operation(
        store.engine, OperationKind(kind.value), app, environment.name, actor
    )
    if started is not None:
        started(operation.id)
    began = time.monotonic()

    def log(line: str) -> None:
        operations.append_log(
            store.engine, operation.id, f"[{time.monotonic() - began:6.2f}s] {line}"
        )

    release: Release | None = None
    steps = _Steps()
    # From here until the runtime has started the release, gc waits (and a gc under way
    # finishes first): the bundle and runtime it plans with stay where they are.
    files = ExitStack()
    files.enter_context(services.files.starting(log))
    try:
        with store.transaction() as connection:
            release = releases.create_release(
                connection,
                app=app,
                environment=environment.name,
                bundle_id=bundle["id"],
                kind=kind,
                created_by=actor,
            )
            audit.record(
                connection,
                actor,
                f"release.{kind.value}",
                f"{app}/{environment.name}",
                {"release": release.id, "bundle": bundle["id"]},
            )
        log(
            f"{kind.value} of {app} bundle {bundle_alias(bundle['id'])} to {environment.name}: "
            f"release {release.id}"
        )
        try:
            replaced, live, message = _release_steps(
                services, environment, bundle, release, log, steps, files.close
            )
        finally:
            with store.transaction() as connection:
                releases.record_steps(connection, release.id, steps.done)
    except BaseException as exc:
        files.close()
        # Unexpected trouble (or an interrupt): the release fails, the old one keeps serving,
        # and the operation never stays running.
        reason = str(exc) or type(exc).__name__
        if release is not None:
            _fail(services, release.id, reason, log)
        operations.finish_operation(store.engine, operation.id, OperationState.FAILED, reason)
        raise
    files.close()
    state = OperationState.SUCCEEDED if live else OperationState.FAILED
    operations.finish_operation(store.engine, operation.id, state, message)
    with store.transaction() as connection:
        final = releases.get_release(connection, release.id)
    return Outcome(operation.id, final, replaced, live, message)


def _release_steps(
    services: Services,
    environment: Environment,
    bundle: dict[str, Any],
    release: Release,
    log: Any,
    steps: _Steps,
    started: Callable[[], None],
) -> tuple[Release | None, bool, str]:
    """``started`` is called once the runtime has started the release (or failed to)."""
    store = services.store
    actor = release.created_by
    try:
        plan = plan_for(services, release, environment, bundle, log)
    except Conflict as exc:  # its files were removed by gc meanwhile
        started()
        _fail(services, release.id, str(exc), log)
        return None, False, f"release {release.id} did not start: {exc}"
    with store.transaction() as connection:
        releases.transition(connection, release.id, ReleaseState.STARTING)
    with store.transaction() as connection:
        serving = releases.live_release(connection, release.app, environment.name)
    log(
        f"starting beside the live release {serving.id}"
        if serving
        else "starting (nothing is live yet)"
    )
    try:
        with steps.timed("start"):
            instance = services.runtime.start(plan, log)
    except ConveyorError as exc:
        started()
        _fail(services, release.id, f"did not start: {exc}", log)
        return None, False, f"release {release.id} did not start: {exc}"
    started()

    with store.transaction() as connection:
        releases.transition(connection, release.id, ReleaseState.VERIFYING)
    log(f"checking {', '.join(plan.manifest.get('checks', ['health']))} at {instance.address}")
    with steps.timed("checks"):
        results = services.runtime.check(instance, plan, log)
    with store.transaction() as connection:
        for result in results:
            releases.record_check(connection, release.id, result)
        verified = releases.mark_verified(
            connection, release.id, tuple(plan.manifest.get("checks", ["health"]))
        )
    # Log lines are written by their own transactions: never log inside one (SQLite has a
    # single writer, so a nested write would wait on itself).
    for result in results:
        log(f"check {result.kind}: {'passed' if result.passed else 'FAILED'}")
    if not verified:
        failed = [r.kind.value for r in results if not r.passed] or ["required"]
        reason = f"{' and '.join(failed)} check failed"
        _fail(services, release.id, reason, log)
        return (
            None,
            False,
            f"release {release.id} failed its checks ({reason}); nothing changed. What it "
            f"printed: `conveyor logs {release.app} --env {environment.name} --release "
            f"{release.id}`",
        )

    with store.transaction() as connection:
        before = releases.live_release(connection, release.app, environment.name)
    routed = False
    try:
        with steps.timed("switch"), store.transaction() as connection:
            replaced = releases.switch_live(connection, release.id)
            audit.record(
                connection,
                actor,
                "release.live",
                f"{release.app}/{environment.name}",
                {"release": release.id, "replaced": replaced.id if replaced else None},
            )
            # Inside the transaction: a failed swap rolls the live pointer back.
            services.runtime.route(instance)
            routed = True
    except Exception as exc:
        if routed and before is not None:
            # The swap happened but the commit did not: traffic goes back to the live release.
            services.runtime.route(Instance(before.id, before.app, before.environment, ""))
        if not isinstance(exc, ConveyorError) and not isinstance(exc, SQLAlchemyError):
            raise
        _fail(services, release.id, f"switch failed: {exc}", log)
        return None, False, f"release {release.id} could not take traffic: {exc}"
    log(f"release {release.id} is live" + (f"; draining release {replaced.id}" if replaced else ""))
    if replaced is not None:
        with steps.timed("drain"):
            services.runtime.stop(replaced.id, log)
    return replaced, True, f"release {release.id} is live in {environment.name}"


def plan_for(
    services: Services,
    release: Release,
    environment: Environment,
    bundle: dict[str, Any],
    log: Callable[[str], None] | None = None,
) -> ReleasePlan:
    """What the runtime needs to start ``release``: its verified archive and the variables the
    app has in the environment now (secrets decrypted for it alone). A variable stored before
    its name was refused is left out, and the operation log says so."""
    with services.store.transaction() as connection:
        removed = catalog.get_bundle(connection, release.app, str(bundle["id"])).get("removed_at")
        given = variables.variables_of(connection, release.app, environment.name, reveal=True)
        uid = app_users.uid_of(connection, release.app, environment.name)
    if removed:
        raise Conflict(files_removed(str(bundle["id"]), str(removed)))
    kept = {}
    for variable in given:
        problem = name_problem(variable.name)
        if problem is None:
            kept[variable.name] = variable.value or ""
        elif log is not None:
            log(f"variable {variable.name} is left out: {problem}")
    for data in environment.data:
        if data.read_only and not data.verified and log is not None:
            log(
                f"data connection {data.name!r} is used without proof that its login cannot "
                "write (the environments file says `verified: false`)"
            )
    for name in [*dict(environment.variables), *dict(environment.secrets)]:
        problem = name_problem(name)
        if problem is not None and log is not None:
            log(f"{environment.name}'s variable {name} is left out: {problem}")
    return ReleasePlan(
        release_id=release.id,
        app=release.app,
        environment=environment,
        bundle_id=bundle["id"],
        manifest=bundle["manifest"],
        archive=services.store.blobs.verified_path(bundle["blob"]),
        variables=kept,
        uid=uid,
    )


def files_removed(bundle_id: str, when: str) -> str:
    return (
        f"the files of bundle {bundle_alias(bundle_id)} were removed by `conveyor gc` on "
        f"{when[:10]} (it keeps the live release and the last few for rollback); deploy the "
        "app again from its source"
    )


class _Steps:
    """How long each step of a release took."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.done.append((name, time.monotonic() - began))


def _fail(services: Services, release_id: int, reason: str, log: Any) -> None:
    """Stop a release that did not make it and mark it failed; a live one is left alone."""
    with services.store.transaction() as connection:
        current = releases.get_release(connection, release_id)
    if current.state is ReleaseState.LIVE or current.state.is_terminal():
        return
    services.runtime.stop(release_id, log)
    with services.store.transaction() as connection:
        releases.transition(connection, release_id, ReleaseState.FAILED, reason)
    log(f"release {release_id} failed: {reason}; the live release keeps serving")


def record_repair(services: Services, release_id: int, what: str) -> None:
    """A running release's files were found changed and restored from its bundle (the runtime
    did it before a restart): an audit event says so."""
    with services.store.transaction() as connection:
        release = releases.get_release(connection, release_id)
        audit.record(
            connection,
            "server",
            "release.repaired",
            f"{release.app}/{release.environment}",
            {"release": release_id, "changes": what},
        )
