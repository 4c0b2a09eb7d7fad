"""Routes for apps: the status table, history, one release, the diff of two environments,
bundles, app logs and variables."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParameter
from pydantic import BaseModel, Field

from conveyor.api.context import Context
from conveyor.api.limits import (
    BUNDLE_LENGTH,
    MAX_ID,
    TEXT_LENGTH,
    VALUE_LENGTH,
    Id,
    Limit,
    Offset,
    OptionalName,
    PathName,
    QueryName,
)
from conveyor.api.permissions import (
    AuthorizedRoute,
    CurrentUser,
    needs,
    seen_environments_of,
    visible,
)
from conveyor.api.shapes import release_json
from conveyor.domain.access import Permission
from conveyor.domain.viewers import parse_access
from conveyor.errors import InvalidInput, NotFound
from conveyor.services import status, variables, viewers
from conveyor.services.bundles import register_bundle
from conveyor.storage import catalog, releases

router = APIRouter(route_class=AuthorizedRoute)

PROVENANCE_HEADER = "Conveyor-Provenance"
_SEEN = "only the environments one has a role in"


class VariableBody(BaseModel):
    value: str = Field(max_length=VALUE_LENGTH)
    secret: bool = False


@router.get("/apps", tags=["apps"], openapi_extra=needs(Permission.SIGNED_IN))
def list_apps(context: Context) -> list[str]:
    with context.services.store.transaction() as connection:
        return catalog.list_apps(connection)


@router.get("/status", tags=["apps"], openapi_extra=needs(Permission.SIGNED_IN, note=_SEEN))
def get_status(context: Context, user: CurrentUser, app: OptionalName = None) -> dict[str, Any]:
    found = status.status(context.services, app)
    seen = set(visible(user, (e["name"] for e in found.environments)))
    return {
        "isolation": context.services.runtime.isolation(),
        "environments": [{**e, "url": context.urls.get(e["name"])} for e in found.environments],
        "apps": found.apps,
        "cells": [
            {
                **dataclasses.asdict(cell),
                "url": f"{context.urls[cell.environment]}/{cell.app}/"
                if cell.environment in context.urls
                else None,
            }
            for cell in found.cells
            if cell.environment in seen
        ],
        "git": [
            dataclasses.asdict(w)
            for w in context.git_watches()
            if (app is None or w.app in (None, app))
            and (w.environment in seen or not w.environment)
        ],
    }


@router.get(
    "/apps/{app}/releases",
    tags=["releases"],
    openapi_extra=needs(Permission.VIEW, "query?:environment", note=f"without it, {_SEEN}"),
)
def app_history(
    context: Context,
    user: CurrentUser,
    app: PathName,
    environment: OptionalName = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    with context.services.store.transaction() as connection:
        seen = visible(user, (e.name for e in catalog.list_environments(connection)))
    found = status.history(context.services, app, environment, limit, within=seen)
    return [release_json(r) for r in found]


@router.get(
    "/releases/{release_id}",
    tags=["releases"],
    openapi_extra=needs(Permission.VIEW, "release:release_id"),
)
def get_release(context: Context, release_id: Id) -> dict[str, Any]:
    with context.services.store.transaction() as connection:
        release = releases.get_release(connection, release_id)
        checks = releases.checks_of(connection, release_id)
    return {
        **release_json(release),
        "checks": [{"kind": str(c.kind), "passed": c.passed, "output": c.output} for c in checks],
    }


@router.get(
    "/apps/{app}/diff",
    tags=["apps"],
    openapi_extra=needs(
        Permission.VIEW,
        "query:left",
        "query:right",
        note="secrets show as set or unset; only admins learn whether two are the same",
    ),
)
def app_diff(
    context: Context, user: CurrentUser, app: PathName, left: QueryName, right: QueryName
) -> list[dict[str, Any]]:
    found = status.diff(context.services, app, left, right, compare_secrets=user.admin)
    return [{"aspect": d.aspect, "left": d.left, "right": d.right, "same": d.same} for d in found]


@router.get("/apps/{app}/bundles/{ref}", tags=["bundles"], openapi_extra=needs(Permission.UPLOAD))
def get_bundle(
    context: Context, app: PathName, ref: Annotated[str, PathParameter(max_length=BUNDLE_LENGTH)]
) -> dict[str, Any]:
    with context.services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}")
        bundle = catalog.get_bundle(connection, app, ref)
    return {
        "id": bundle["id"],
        "app": bundle["app"],
        "size": bundle["size"],
        "manifest": bundle["manifest"],
        "provenance": bundle["provenance"],
        "uploaded_by": bundle["uploaded_by"],
        "created_at": bundle["created_at"],
        "removed_at": bundle["removed_at"],
    }


@router.post("/bundles", tags=["bundles"], status_code=201, openapi_extra=needs(Permission.UPLOAD))
async def upload_bundle(
    request: Request,
    context: Context,
    user: CurrentUser,
    provenance: Annotated[
        str | None, Header(alias=PROVENANCE_HEADER, max_length=TEXT_LENGTH * 10)
    ] = None,
) -> dict[str, Any]:
    """The request body is the bundle archive (application/gzip). Uploading a bundle the
    server has already changes nothing (idempotent by id)."""
    facts = _provenance(provenance)
    with tempfile.TemporaryDirectory(prefix="conveyor-upload-") as scratch:
        archive = Path(scratch) / "bundle.tar.gz"
        size = 0
        with archive.open("wb") as sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > context.max_bundle_bytes:
                    raise InvalidInput(
                        f"the bundle is larger than this server takes "
                        f"({context.max_bundle_bytes // 2**20} MB); leave data files out "
                        "of it (`exclude:` in conveyor.yml) or raise the server's limit"
                    )
                sink.write(chunk)
        if size == 0:
            raise InvalidInput("the request has no body: send the bundle archive")
        registered = register_bundle(context.services, archive, facts, user.name)
    return {"id": registered.bundle_id, "app": registered.app, "new": registered.new}


@router.get(
    "/apps/{app}/environments/{environment}/logs",
    tags=["apps"],
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def app_logs(
    context: Context,
    app: PathName,
    environment: PathName,
    after: Offset = 0,
    release: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> dict[str, Any]:
    """What the live release (or ``release``) printed after offset ``after``; with
    ``wait``, holds the request until there is more or the wait ends."""
    with context.services.store.transaction() as connection:
        catalog.get_environment(connection, environment)
        if release is None:
            live = releases.live_release(connection, app, environment)
            if live is None:
                raise NotFound(f"nothing of {app} is live in {environment}")
            release = live.id
        else:
            found = releases.get_release(connection, release)
            if (found.app, found.environment) != (app, environment):
                raise InvalidInput(f"release {release} is not of {app} in {environment}")
    deadline = time.monotonic() + wait
    while True:
        offset, text = context.services.runtime.read_log(release, after)
        if text or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return {"release": release, "offset": offset, "text": text}


@router.get(
    "/apps/{app}/environments/{environment}/variables",
    tags=["variables"],
    openapi_extra=needs(Permission.VIEW, "path:environment"),
)
def list_vars(context: Context, app: PathName, environment: PathName) -> list[dict[str, Any]]:
    """Secret values are never returned: they show as a mask."""
    return [
        dataclasses.asdict(v) for v in variables.list_variables(context.services, app, environment)
    ]


@router.put(
    "/apps/{app}/environments/{environment}/variables/{name}",
    tags=["variables"],
    openapi_extra=needs(Permission.SET_VARIABLES, "path:environment"),
)
def set_var(
    context: Context,
    user: CurrentUser,
    app: PathName,
    environment: PathName,
    name: PathName,
    body: VariableBody,
) -> dict[str, Any]:
    """Takes effect with the app's next release in the environment."""
    new = variables.set_variable(
        context.services, app, environment, name, body.value, secret=body.secret, actor=user.name
    )
    return {"name": name, "secret": body.secret, "new": new}


@router.delete(
    "/apps/{app}/environments/{environment}/variables/{name}",
    tags=["variables"],
    openapi_extra=needs(Permission.SET_VARIABLES, "path:environment"),
)
def unset_var(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, name: PathName
) -> dict[str, Any]:
    variables.unset_variable(context.services, app, environment, name, user.name)
    return {"name": name, "removed": True}


class AccessBody(BaseModel):
    access: str = Field(
        max_length=TEXT_LENGTH,
        description="public, signed-in, or users and groups: ana,sales-team",
    )


@router.put(
    "/apps/{app}/environments/{environment}/access",
    tags=["viewers"],
    openapi_extra=needs(Permission.SET_ACCESS, "path:environment"),
)
def set_access(
    context: Context, user: CurrentUser, app: PathName, environment: PathName, body: AccessBody
) -> dict[str, Any]:
    """Who may view the app there; the proxy enforces it from the next request on."""
    access = parse_access(body.access)
    viewers.set_access(context.services, app, environment, access, user.name)
    return {"app": app, "environment": environment, "access": access.describe()}


@router.get(
    "/apps/{app}/access",
    tags=["viewers"],
    openapi_extra=needs(Permission.SIGNED_IN, note=_SEEN),
)
def show_access(context: Context, user: CurrentUser, app: PathName) -> dict[str, str]:
    seen = seen_environments_of(context.services, user, app)
    return viewers.access_table(context.services, app, seen)


@router.get(
    "/apps/{app}/usage",
    tags=["viewers"],
    openapi_extra=needs(Permission.SIGNED_IN, note=_SEEN),
)
def show_usage(context: Context, user: CurrentUser, app: PathName) -> list[dict[str, Any]]:
    """Page views, distinct viewers and sessions per environment, counted by the proxy."""
    with context.services.store.transaction() as connection:
        names = [e.name for e in catalog.list_environments(connection)]
    return [
        dataclasses.asdict(u) for u in viewers.usage_of(context.services, app, visible(user, names))
    ]


def _provenance(header: str | None) -> dict[str, Any]:
    if not header:
        return {}
    try:
        facts = json.loads(base64.urlsafe_b64decode(header.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            f"the {PROVENANCE_HEADER} header is not base64url-encoded JSON"
        ) from None
    if not isinstance(facts, dict):
        raise InvalidInput(f"the {PROVENANCE_HEADER} header must hold a JSON object")
    return facts
