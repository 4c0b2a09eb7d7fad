"""Routes that release: deploy, promote, roll back, approve; and following an operation."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.limits import (
    BUNDLE_LENGTH,
    MAX_ID,
    TEXT_LENGTH,
    Id,
    LineId,
    OptionalName,
    PathName,
)
from conveyor.api.permissions import AuthorizedRoute, CheckedEnvironments, CurrentUser, needs
from conveyor.api.shapes import begun_json, operation_json
from conveyor.domain.access import Permission
from conveyor.domain.operations import OperationState
from conveyor.services import pipeline
from conveyor.storage import operations

router = APIRouter(route_class=AuthorizedRoute)


class DeployBody(BaseModel):
    bundle: str = Field(
        max_length=BUNDLE_LENGTH, description="bundle id or a prefix of at least 6 hex digits"
    )


class PromoteBody(BaseModel):
    bundle: str | None = Field(
        None, max_length=BUNDLE_LENGTH, description="default: the bundle live upstream"
    )


class RollbackBody(BaseModel):
    to_release: int | None = Field(None, ge=1, le=MAX_ID)


class ApproveBody(BaseModel):
    bundle: str | None = Field(None, max_length=BUNDLE_LENGTH)
    comment: str = Field("", max_length=TEXT_LENGTH)


@router.post(
    "/apps/{app}/environments/{environment}/deploys",
    tags=["releases"],
    status_code=202,
    openapi_extra=needs(Permission.DEPLOY, "path:environment"),
)
def start_deploy(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: DeployBody
) -> JSONResponse:
    begun = context.background.submit(
        lambda started: pipeline.deploy(
            context.services, app, body.bundle, environment, user.name, started
        )
    )
    return begun_json(context.services, begun)


@router.post(
    "/apps/{app}/promotions",
    tags=["releases"],
    status_code=202,
    openapi_extra=needs(Permission.PROMOTE, "promotion"),
)
def start_promotion(
    context: Context,
    user: CurrentUser,
    checked: CheckedEnvironments,
    app: PathName,
    body: PromoteBody,
    to: OptionalName = None,
) -> JSONResponse:
    """Promote into ``to`` (default: the next environment with something new upstream)."""
    [target] = checked  # where the permission was checked, not resolved again
    begun = context.background.submit(
        lambda started: pipeline.promote(
            context.services, app, user.name, target, body.bundle, started
        )
    )
    return begun_json(context.services, begun)


@router.post(
    "/apps/{app}/environments/{environment}/rollbacks",
    tags=["releases"],
    status_code=202,
    openapi_extra=needs(Permission.ROLL_BACK, "path:environment"),
)
def start_rollback(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: RollbackBody
) -> JSONResponse:
    begun = context.background.submit(
        lambda started: pipeline.rollback(
            context.services, app, environment, user.name, body.to_release, started
        )
    )
    return begun_json(context.services, begun)


@router.post(
    "/apps/{app}/environments/{environment}/approvals",
    tags=["releases"],
    status_code=201,
    openapi_extra=needs(Permission.APPROVE, "path:environment"),
)
def add_approval(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: ApproveBody
) -> dict[str, Any]:
    bundle = pipeline.approve(
        context.services, app, environment, body.bundle, user.name, body.comment
    )
    return {"app": app, "environment": environment, "bundle": bundle, "by": user.name}


@router.get(
    "/operations/{operation_id}",
    tags=["operations"],
    openapi_extra=needs(Permission.VIEW, "operation:operation_id"),
)
def get_operation(context: Context, operation_id: Id) -> dict[str, Any]:
    return operation_json(operations.get_operation(context.services.store.engine, operation_id))


@router.get(
    "/operations/{operation_id}/log",
    tags=["operations"],
    openapi_extra=needs(Permission.VIEW, "operation:operation_id"),
)
def follow_operation(
    context: Context,
    operation_id: Id,
    after: LineId = 0,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> dict[str, Any]:
    """Log lines after line id ``after``; with ``wait``, holds the request up to that many
    seconds until a line arrives or the operation ends (long polling)."""
    engine = context.services.store.engine
    deadline = time.monotonic() + wait
    while True:
        operation = operations.get_operation(engine, operation_id)
        lines = operations.log_lines(engine, operation_id, after)
        if lines or operation.state is not OperationState.RUNNING:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return {
        "operation": operation_json(operation),
        "lines": [{"id": i, "at": at, "line": line} for i, at, line in lines],
    }
