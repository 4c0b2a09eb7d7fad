"""Environments as code: the server's environments against a declared file, applied in one
transaction with an audit event, and refused when the server changed since the plan was shown.
Once a file manages them, ad-hoc changes through the API are refused with a pointer to it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection, update

from conveyor.domain.environments import (
    Change,
    Environment,
    Policy,
    definition_problem,
    environment_to_dict,
    fingerprint,
    order_problem,
    plan_changes,
)
from conveyor.errors import Conflict, InvalidInput, PolicyViolation
from conveyor.services.context import Services
from conveyor.storage import audit, catalog, schema

MANAGED_BY = "environments_managed_by"

_log = logging.getLogger("conveyor.environments")


@dataclass(frozen=True)
class EnvironmentsState:
    environments: list[Environment]
    fingerprint: str
    managed_by: str | None


def state(services: Services) -> EnvironmentsState:
    with services.store.transaction() as connection:
        found = catalog.list_environments(connection)
        managed = catalog.get_setting(connection, MANAGED_BY)
    return EnvironmentsState(found, fingerprint(found), managed)


def apply(
    services: Services,
    desired: Sequence[Environment],
    *,
    expected: str | None,
    source: str,
    actor: str,
    locked_by: str | None = None,
) -> list[Change]:
    """Make the server's environments exactly ``desired``. ``expected`` is the fingerprint the
    plan was made from: when the server changed since, nothing is applied (Conflict).
    ``locked_by`` is the file the server itself was started with, if any: while it is in
    charge, nothing else applies environments (PolicyViolation naming it). ``source`` names
    the file applied, as the client says; the audit event also holds the digest of what was
    applied, and ``actor`` is the authenticated user."""
    if locked_by is not None:
        raise PolicyViolation(
            f"the environments are managed by the server's own file {locked_by}: change them "
            "there and restart `conveyor serve`, so the file stays the truth"
        )
    _check(desired)
    with services.store.transaction() as connection:
        current = catalog.list_environments(connection)
        if expected is not None and fingerprint(current) != expected:
            raise Conflict(
                "the server's environments changed since this plan was made; run "
                "`conveyor plan` again, look at it, then apply"
            )
        changes = plan_changes(current, desired)
        if changes:
            _save(connection, current, desired)
            audit.record(
                connection,
                actor,
                "environments.apply",
                "environments",
                {
                    "changes": [c.describe() for c in changes],
                    "digest": fingerprint(desired),
                    "file": source,
                },
            )
        catalog.set_setting(connection, MANAGED_BY, source)
    if changes:
        try:
            services.runtime.environments_changed(desired)
        except Exception:  # applied all the same: the next release or restart takes it
            _log.exception("the running releases did not take the new environments")
    return changes


def set_policy(
    services: Services, name: str, policy: Policy, actor: str, locked_by: str | None = None
) -> Environment:
    """An ad-hoc change of one environment's policy; refused while a file manages them."""
    with services.store.transaction() as connection:
        managed = locked_by or catalog.get_setting(connection, MANAGED_BY)
        if managed is not None:
            raise PolicyViolation(
                f"the environments are managed from {managed}: change {name}'s policy there "
                f"and run `conveyor apply {managed}`, so the file stays the truth"
            )
        current = catalog.get_environment(connection, name)
        changed = replace(current, policy=policy)
        catalog.save_environments(connection, [changed])
        audit.record(
            connection, actor, "environment.policy", name, environment_to_dict(changed)["policy"]
        )
    return changed


def _check(desired: Sequence[Environment]) -> None:
    """The rules every definition follows, checked here too: a client may send anything."""
    problem = order_problem(desired)
    if problem is not None:
        raise InvalidInput(problem)
    for environment in desired:
        problem = definition_problem(environment)
        if problem is not None:
            raise InvalidInput(f"environment {environment.name!r}: {problem}")


def _save(
    connection: Connection, current: Sequence[Environment], desired: Sequence[Environment]
) -> None:
    wanted = {e.name for e in desired}
    for environment in current:
        if environment.name not in wanted:
            catalog.remove_environment(connection, environment.name)
    # Positions are unique: move the survivors out of the way before renumbering.
    table = schema.environments
    connection.execute(update(table).values(position=-1 - table.c.position))
    catalog.save_environments(connection, desired)
