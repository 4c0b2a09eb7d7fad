"""`conveyor gc` through the API: what retention removes (or would), and the space it frees.
An admin-only action: it removes files of every app in every environment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.permissions import AuthorizedRoute, CurrentUser, needs
from conveyor.domain.access import Permission
from conveyor.errors import Conflict
from conveyor.services.retention import outcome_json

router = APIRouter(route_class=AuthorizedRoute)


class GcBody(BaseModel):
    dry_run: bool = Field(False, description="only say what would be removed")


@router.post("/gc", tags=["server"], openapi_extra=needs(Permission.ADMIN))
def collect_garbage(context: Context, user: CurrentUser, body: GcBody) -> dict[str, Any]:
    """Remove what no live release, rollback target, bundle awaiting promotion or approval,
    or running operation needs (see docs/runtime.md, Retention); answers when done."""
    if context.retention is None:
        raise Conflict(
            "this server was started without retention; restart it with `conveyor serve`"
        )
    outcome = context.retention.collect(user.name, dry_run=body.dry_run)
    return outcome_json(outcome)
