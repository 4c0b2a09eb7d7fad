"""What a server does when it starts (docs/architecture.md, State and restarts): operations
that were in flight are marked interrupted, releases that were on their way are marked failed,
and every live release is started again and routed. Nothing else changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.domain.releases import ReleaseState
from conveyor.errors import ConveyorError
from conveyor.runtime.interface import Log
from conveyor.services.context import Services
from conveyor.services.releasing import plan_for
from conveyor.storage import catalog, operations, releases, runs


@dataclass
class Reconciled:
    interrupted: list[int] = field(default_factory=list)  # operation ids
    failed: list[int] = field(default_factory=list)  # release ids that were on their way
    serving: list[int] = field(default_factory=list)  # live releases started again
    not_serving: dict[int, str] = field(default_factory=dict)  # live releases that did not start


def reconcile(services: Services, log: Log) -> Reconciled:
    report = Reconciled()
    for operation in operations.interrupt_running(services.store.engine):
        report.interrupted.append(operation.id)
        log(
            f"operation {operation.id} ({operation.kind} of {operation.app} to "
            f"{operation.environment}) was interrupted by the server stopping"
        )
    for stopped in runs.interrupt_running(services.store.engine):
        log(f"run {stopped.id} of {stopped.app} in {stopped.environment} was interrupted")
    with services.store.transaction() as connection:
        for release in releases.unfinished(connection):
            releases.transition(
                connection,
                release.id,
                ReleaseState.FAILED,
                f"the server stopped while it was {release.state}",
            )
            report.failed.append(release.id)
        live = releases.all_live(connection)
        environments = {e.name: e for e in catalog.list_environments(connection)}
        bundles = {r.id: catalog.get_bundle(connection, r.app, r.bundle_id) for r in live}
    for release in live:
        where = f"{release.app} in {release.environment} (release {release.id})"
        try:
            plan = plan_for(
                services, release, environments[release.environment], bundles[release.id]
            )
            # One that would sleep when idle starts asleep: its first request starts it.
            instance = services.runtime.start(plan, log, lazily=True)
            services.runtime.route(instance)
        except ConveyorError as exc:
            report.not_serving[release.id] = str(exc)
            log(f"{where} did not start again: {exc}")
            continue
        report.serving.append(release.id)
        log(f"{where} is serving again")
    return report
