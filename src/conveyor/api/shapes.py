"""How the API shapes what services return into JSON."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from conveyor.api.background import Begun
from conveyor.domain.access import User
from conveyor.domain.operations import Operation
from conveyor.domain.releases import Release
from conveyor.services.context import Services
from conveyor.storage import operations
from conveyor.storage.tokens import Token


def release_json(release: Release) -> dict[str, Any]:
    return {
        "id": release.id,
        "app": release.app,
        "environment": release.environment,
        "bundle": release.bundle_id,
        "kind": str(release.kind),
        "state": str(release.state),
        "created_by": release.created_by,
        "created_at": release.created_at,
        "reason": release.reason,
        "verified": release.verified,
        "steps": [{"name": name, "seconds": round(seconds, 3)} for name, seconds in release.steps],
        "files_removed_at": release.files_removed_at,
    }


def operation_json(operation: Operation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "kind": str(operation.kind),
        "app": operation.app,
        "environment": operation.environment,
        "state": str(operation.state),
        "started_by": operation.started_by,
        "started_at": operation.started_at,
        "finished_at": operation.finished_at,
        "result": operation.result,
    }


def begun_json(services: Services, begun: Begun) -> JSONResponse:
    """202 with the operation a request started, or 200 with why none was needed."""
    if begun.operation_id is None:
        return JSONResponse({"operation": None, "message": str(begun.result)}, status_code=200)
    operation = operations.get_operation(services.store.engine, begun.operation_id)
    return JSONResponse(
        {"operation": operation_json(operation), "message": "started"}, status_code=202
    )


def user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "admin": user.admin,
        "disabled": user.disabled,
        "roles": [str(g) for g in sorted(user.grants)],
        "groups": sorted(user.groups),
        "password": user.has_password,
    }


def token_json(token: Token) -> dict[str, Any]:
    """Everything known of a token except the token."""
    return {
        "id": token.id,
        "user": token.user,
        "created": token.created_at,
        "created_by": token.created_by,
        "expires": token.expires_at,
        "last_used": token.last_used_at,
        "revoked": token.revoked_at,
    }
