"""Routes for environments: their list and definitions, applying a file, ad-hoc policy
changes, runtime drift and repairs."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.limits import (
    LIST_LENGTH,
    MAX_APPROVALS,
    NAME_LENGTH,
    TEXT_LENGTH,
    OptionalName,
    PathName,
)
from conveyor.api.permissions import AuthorizedRoute, CurrentUser, needs, visible
from conveyor.api.shapes import begun_json
from conveyor.domain.access import Permission
from conveyor.domain.environments import Policy, environment_from_dict, environment_to_dict
from conveyor.errors import InvalidInput
from conveyor.services import data_check as data_check_service
from conveyor.services import drift, environments
from conveyor.storage import catalog

router = APIRouter(route_class=AuthorizedRoute, tags=["environments"])


class ApplyBody(BaseModel):
    environments: list[dict[str, Any]] = Field(max_length=LIST_LENGTH)
    expected: str | None = Field(
        None, max_length=TEXT_LENGTH, description="the fingerprint the plan was made from"
    )
    source: str = Field(
        "environments.yml",
        max_length=TEXT_LENGTH,
        description="the file applied, for the audit log",
    )


class PolicyBody(BaseModel):
    direct_deploys: bool
    promotes_from: str | None = Field(None, max_length=NAME_LENGTH)
    approvals: int = Field(0, ge=0, le=MAX_APPROVALS)
    approver_not_deployer: bool = False


@router.get("/environments", openapi_extra=needs(Permission.SIGNED_IN))
def list_environments(context: Context) -> list[dict[str, Any]]:
    with context.services.store.transaction() as connection:
        found = catalog.list_environments(connection)
    return [
        {
            "name": e.name,
            "position": e.position,
            "port": e.port,
            "config_name": e.config_name,
            "url": context.urls.get(e.name),
            "policy": dataclasses.asdict(e.policy),
        }
        for e in found
    ]


@router.get("/environments/state", openapi_extra=needs(Permission.ADMIN))
def environments_state(context: Context) -> dict[str, Any]:
    """The environments' full definitions (secrets as references, never values), their
    fingerprint, and the file that manages them, if any."""
    found = environments.state(context.services)
    return {
        "environments": [environment_to_dict(e) for e in found.environments],
        "fingerprint": found.fingerprint,
        "managed_by": context.environments_file or found.managed_by,
    }


@router.post("/environments/apply", openapi_extra=needs(Permission.ADMIN))
def environments_apply(context: Context, user: CurrentUser, body: ApplyBody) -> dict[str, Any]:
    """Make the environments exactly these, in one transaction; 409 when the server's
    environments changed since ``expected`` was read; 403 while the server's own environments
    file is in charge."""
    try:
        desired = [environment_from_dict(e) for e in body.environments]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"an environment's definition is malformed: {exc}") from None
    changes = environments.apply(
        context.services,
        desired,
        expected=body.expected,
        source=body.source,
        actor=user.name,
        locked_by=context.environments_file,
    )
    notes = context.environments_applied(desired) if changes else []
    return {"changes": [c.describe() for c in changes], "notes": notes}


@router.put("/environments/{name}/policy", openapi_extra=needs(Permission.ADMIN))
def environment_policy(
    context: Context, user: CurrentUser, name: PathName, body: PolicyBody
) -> dict[str, Any]:
    """An ad-hoc policy change; refused (403) while a file manages the environments."""
    changed = environments.set_policy(
        context.services,
        name,
        Policy(**body.model_dump()),
        user.name,
        locked_by=context.environments_file,
    )
    return environment_to_dict(changed)


@router.get(
    "/drift",
    openapi_extra=needs(
        Permission.VIEW, "query?:environment", note="without it, the environments one has a role in"
    ),
)
def runtime_drift(
    context: Context, user: CurrentUser, environment: OptionalName = None
) -> dict[str, Any]:
    """The runtimes of live releases against their locks."""
    found = drift.drift(context.services, environment)
    with context.services.store.transaction() as connection:
        seen = set(visible(user, (e.name for e in catalog.list_environments(connection))))
    runtimes = []
    for d in found:
        shown = [r for r in d.releases if r.environment in seen]
        if not shown:
            continue
        runtimes.append(
            {
                "runtime": d.state.runtime_id,
                "drifted": d.drifted,
                "problems": list(d.state.problems),
                "summary": d.state.summary,
                "releases": [
                    {"id": r.id, "app": r.app, "environment": r.environment} for r in shown
                ],
            }
        )
    return {"drifted": any(r["drifted"] for r in runtimes), "runtimes": runtimes}


@router.post("/repairs", status_code=202, openapi_extra=needs(Permission.ADMIN))
def repair_runtimes(
    context: Context, user: CurrentUser, environment: OptionalName = None
) -> JSONResponse:
    """Rebuild drifted runtimes from their locks and move their live releases onto them
    with blue-green switches: an operation (202), whose log the client follows."""
    begun = context.background.submit(
        lambda started: drift.start_repair(context.services, environment, user.name, started)
    )
    return begun_json(context.services, begun)


@router.get(
    "/data/check",
    tags=["data"],
    openapi_extra=needs(
        Permission.VIEW, "query?:environment", note="without it, the environments one has a role in"
    ),
)
def data_check(
    context: Context, user: CurrentUser, environment: OptionalName = None
) -> list[dict[str, Any]]:
    """Connect with each read-only data connection's login and show what it could write."""
    with context.services.store.transaction() as connection:
        names = [e.name for e in catalog.list_environments(connection)]
    wanted = [environment] if environment else visible(user, names)
    return [
        {
            "environment": c.environment,
            "connection": c.connection,
            "verdict": c.verdict,
            "login": c.login,
            "note": c.note,
            "problems": [{"privilege": p.privilege, "fix": p.fix} for p in c.problems],
        }
        for c in data_check_service.check(context.services, wanted)
    ]
