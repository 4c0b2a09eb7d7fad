"""The FastAPI application: every route under /api/v1, bearer-token authentication, one error
shape (api/errors.py). Handlers are thin: they call services and shape JSON."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor import __version__
from conveyor.api.background import Background
from conveyor.api.errors import install_error_handlers
from conveyor.domain.environments import (
    Environment,
    Policy,
    environment_from_dict,
    environment_to_dict,
)
from conveyor.domain.operations import OperationState
from conveyor.domain.releases import Release
from conveyor.errors import InvalidInput, NotFound, Unauthorized
from conveyor.services import drift, environments, pipeline, status, variables
from conveyor.services.bundles import register_bundle
from conveyor.services.context import Services
from conveyor.services.git_driven import Watch
from conveyor.storage import audit, catalog, operations, releases, tokens

PROVENANCE_HEADER = "Conveyor-Provenance"


@dataclass
class ApiContext:
    services: Services
    background: Background
    max_bundle_bytes: int = 512 * 2**20
    #: environment -> the public base URL of its listener, for links in answers
    urls: dict[str, str] = dataclasses.field(default_factory=dict)
    #: What git-driven mode last did for each watched branch.
    git_watches: Callable[[], list[Watch]] = list
    #: Called after environments were applied (the server opens listeners for new ones).
    environments_applied: Callable[[list[Environment]], list[str]] = lambda environments: []


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Take data-science apps, APIs and reports from Dev through Test to Prod.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.state.context = context
    app.include_router(_public())
    app.include_router(_routes(), prefix="/api/v1", dependencies=[Depends(actor_of)])
    return app


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def actor_of(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The owner of the bearer token; 401 without a valid one."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized(
            "this request has no token: send `Authorization: Bearer <token>` (the CLI does "
            "after `conveyor login`)"
        )
    services = _context(request).services
    with services.store.transaction() as connection:
        owner = tokens.owner_of(connection, authorization.removeprefix("Bearer ").strip())
    if owner is None:
        raise Unauthorized("the token is not valid for this server; run `conveyor login` again")
    return owner


Actor = Annotated[str, Depends(actor_of)]
Context = Annotated[ApiContext, Depends(_context)]


def _public() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/health", tags=["server"])
    def health() -> dict[str, str]:
        """Liveness, without a token."""
        return {"status": "ok", "version": __version__}

    return router


# --- request bodies ------------------------------------------------------------------------


class DeployBody(BaseModel):
    app: str
    bundle: str = Field(description="bundle id or a prefix of at least 6 hex digits")
    environment: str = "dev"


class PromoteBody(BaseModel):
    app: str
    to: str | None = Field(None, description="default: the next environment")
    bundle: str | None = Field(None, description="default: the bundle live upstream")


class RollbackBody(BaseModel):
    app: str
    environment: str
    to_release: int | None = None


class ApproveBody(BaseModel):
    app: str
    environment: str
    bundle: str | None = None
    comment: str = ""


class ApplyBody(BaseModel):
    environments: list[dict[str, Any]]
    expected: str | None = Field(None, description="the fingerprint the plan was made from")
    source: str = Field("environments.yml", description="the file, for the audit log")


class PolicyBody(BaseModel):
    direct_deploys: bool
    promotes_from: str | None = None
    approvals: int = Field(0, ge=0)
    approver_not_deployer: bool = False


class VariableBody(BaseModel):
    value: str
    secret: bool = False


class TokenBody(BaseModel):
    owner: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


# --- shaping -------------------------------------------------------------------------------


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
    }


def _begun(context: ApiContext, begun: Any) -> JSONResponse:
    if begun.operation_id is None:
        return JSONResponse({"operation": None, "message": str(begun.result)}, status_code=200)
    operation = operations.get_operation(context.services.store.engine, begun.operation_id)
    return JSONResponse(
        {"operation": _operation_json(operation), "message": "started"}, status_code=202
    )


def _operation_json(operation: Any) -> dict[str, Any]:
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


def _routes() -> APIRouter:  # noqa: C901 - one flat list of thin handlers reads best
    router = APIRouter()

    # --- environments, apps, status ------------------------------------------------------

    @router.get("/environments", tags=["environments"])
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

    @router.get("/environments/state", tags=["environments"])
    def environments_state(context: Context) -> dict[str, Any]:
        """The environments' full definitions (secrets as references, never values), their
        fingerprint, and the file that manages them, if any."""
        found = environments.state(context.services)
        return {
            "environments": [environment_to_dict(e) for e in found.environments],
            "fingerprint": found.fingerprint,
            "managed_by": found.managed_by,
        }

    @router.post("/environments/apply", tags=["environments"])
    def environments_apply(context: Context, actor: Actor, body: ApplyBody) -> dict[str, Any]:
        """Make the environments exactly these, in one transaction; 409 when the server's
        environments changed since ``expected`` was read."""
        try:
            desired = [environment_from_dict(e) for e in body.environments]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"an environment's definition is malformed: {exc}") from None
        changes = environments.apply(
            context.services, desired, expected=body.expected, source=body.source, actor=actor
        )
        notes = context.environments_applied(desired) if changes else []
        return {"changes": [c.describe() for c in changes], "notes": notes}

    @router.put("/environments/{name}/policy", tags=["environments"])
    def environment_policy(
        context: Context, actor: Actor, name: str, body: PolicyBody
    ) -> dict[str, Any]:
        """An ad-hoc policy change; refused (403) while a file manages the environments."""
        changed = environments.set_policy(
            context.services, name, Policy(**body.model_dump()), actor
        )
        return environment_to_dict(changed)

    @router.get("/drift", tags=["environments"])
    def runtime_drift(context: Context, environment: str | None = None) -> dict[str, Any]:
        """The runtimes of live releases against their locks."""
        found = drift.drift(context.services, environment)
        return {
            "drifted": any(d.drifted for d in found),
            "runtimes": [
                {
                    "runtime": d.state.runtime_id,
                    "drifted": d.drifted,
                    "problems": list(d.state.problems),
                    "summary": d.state.summary,
                    "releases": [
                        {"id": r.id, "app": r.app, "environment": r.environment} for r in d.releases
                    ],
                }
                for d in found
            ],
        }

    @router.post("/repairs", tags=["environments"])
    def repair_runtimes(
        context: Context, actor: Actor, environment: str | None = None
    ) -> dict[str, Any]:
        """Rebuild drifted runtimes from their locks and move their live releases onto them
        with blue-green switches. Answers when done."""
        lines: list[str] = []
        outcomes = drift.repair(context.services, environment, actor, lines.append)
        return {
            "log": lines,
            "releases": [
                {"id": o.release.id, "live": o.live, "message": o.message} for o in outcomes
            ],
        }

    @router.get("/apps", tags=["apps"])
    def list_apps(context: Context) -> list[str]:
        with context.services.store.transaction() as connection:
            return catalog.list_apps(connection)

    @router.get("/status", tags=["apps"])
    def get_status(context: Context, app: str | None = None) -> dict[str, Any]:
        found = status.status(context.services, app)
        return {
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
            ],
            "git": [
                dataclasses.asdict(w)
                for w in context.git_watches()
                if app is None or w.app in (None, app)
            ],
        }

    @router.get("/apps/{app}/releases", tags=["releases"])
    def app_history(
        context: Context, app: str, environment: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return [release_json(r) for r in status.history(context.services, app, environment, limit)]

    @router.get("/releases/{release_id}", tags=["releases"])
    def get_release(context: Context, release_id: int) -> dict[str, Any]:
        with context.services.store.transaction() as connection:
            release = releases.get_release(connection, release_id)
            checks = releases.checks_of(connection, release_id)
        return {
            **release_json(release),
            "checks": [
                {"kind": str(c.kind), "passed": c.passed, "output": c.output} for c in checks
            ],
        }

    @router.get("/apps/{app}/diff", tags=["apps"])
    def app_diff(context: Context, app: str, left: str, right: str) -> list[dict[str, Any]]:
        return [
            {"aspect": d.aspect, "left": d.left, "right": d.right, "same": d.same}
            for d in status.diff(context.services, app, left, right)
        ]

    # --- bundles ---------------------------------------------------------------------------

    @router.get("/apps/{app}/bundles/{ref}", tags=["bundles"])
    def get_bundle(context: Context, app: str, ref: str) -> dict[str, Any]:
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
        }

    @router.post("/bundles", tags=["bundles"], status_code=201)
    async def upload_bundle(
        request: Request,
        context: Context,
        actor: Actor,
        provenance: Annotated[str | None, Header(alias=PROVENANCE_HEADER)] = None,
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
            registered = register_bundle(context.services, archive, facts, actor)
        return {"id": registered.bundle_id, "app": registered.app, "new": registered.new}

    # --- releases: deploy, promote, rollback, approve ---------------------------------------

    @router.post("/deploys", tags=["releases"], status_code=202)
    def start_deploy(context: Context, actor: Actor, body: DeployBody) -> JSONResponse:
        begun = context.background.submit(
            lambda started: pipeline.deploy(
                context.services, body.app, body.bundle, body.environment, actor, started
            )
        )
        return _begun(context, begun)

    @router.post("/promotions", tags=["releases"], status_code=202)
    def start_promotion(context: Context, actor: Actor, body: PromoteBody) -> JSONResponse:
        begun = context.background.submit(
            lambda started: pipeline.promote(
                context.services, body.app, actor, body.to, body.bundle, started
            )
        )
        return _begun(context, begun)

    @router.post("/rollbacks", tags=["releases"], status_code=202)
    def start_rollback(context: Context, actor: Actor, body: RollbackBody) -> JSONResponse:
        begun = context.background.submit(
            lambda started: pipeline.rollback(
                context.services, body.app, body.environment, actor, body.to_release, started
            )
        )
        return _begun(context, begun)

    @router.post("/approvals", tags=["releases"], status_code=201)
    def add_approval(context: Context, actor: Actor, body: ApproveBody) -> dict[str, Any]:
        bundle = pipeline.approve(
            context.services, body.app, body.environment, body.bundle, actor, body.comment
        )
        return {"app": body.app, "environment": body.environment, "bundle": bundle, "by": actor}

    # --- operations ------------------------------------------------------------------------

    @router.get("/operations/{operation_id}", tags=["operations"])
    def get_operation(context: Context, operation_id: int) -> dict[str, Any]:
        return _operation_json(
            operations.get_operation(context.services.store.engine, operation_id)
        )

    @router.get("/operations/{operation_id}/log", tags=["operations"])
    def follow_operation(
        context: Context,
        operation_id: int,
        after: int = 0,
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
            "operation": _operation_json(operation),
            "lines": [{"id": i, "at": at, "line": line} for i, at, line in lines],
        }

    # --- app logs --------------------------------------------------------------------------

    @router.get("/apps/{app}/environments/{environment}/logs", tags=["apps"])
    def app_logs(
        context: Context,
        app: str,
        environment: str,
        after: int = 0,
        release: int | None = None,
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

    # --- variables -------------------------------------------------------------------------

    @router.get("/apps/{app}/environments/{environment}/variables", tags=["variables"])
    def list_vars(context: Context, app: str, environment: str) -> list[dict[str, Any]]:
        """Secret values are never returned: they show as a mask."""
        return [
            dataclasses.asdict(v)
            for v in variables.list_variables(context.services, app, environment)
        ]

    @router.put("/apps/{app}/environments/{environment}/variables/{name}", tags=["variables"])
    def set_var(
        context: Context, actor: Actor, app: str, environment: str, name: str, body: VariableBody
    ) -> dict[str, Any]:
        """Takes effect with the app's next release in the environment."""
        new = variables.set_variable(
            context.services, app, environment, name, body.value, secret=body.secret, actor=actor
        )
        return {"name": name, "secret": body.secret, "new": new}

    @router.delete("/apps/{app}/environments/{environment}/variables/{name}", tags=["variables"])
    def unset_var(
        context: Context, actor: Actor, app: str, environment: str, name: str
    ) -> dict[str, Any]:
        variables.unset_variable(context.services, app, environment, name, actor)
        return {"name": name, "removed": True}

    # --- audit and tokens ------------------------------------------------------------------

    @router.get("/audit", tags=["audit"])
    def audit_events(context: Context, limit: int = 100) -> list[dict[str, Any]]:
        with context.services.store.transaction() as connection:
            found = audit.events(connection)
        return [
            {
                "seq": e.seq,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "details": dict(e.details),
                "hash": e.hash,
            }
            for e in found[-limit:]
        ]

    @router.get("/audit/verify", tags=["audit"])
    def audit_verify(context: Context) -> dict[str, Any]:
        with context.services.store.transaction() as connection:
            problems = audit.verify(connection)
            count = len(audit.events(connection))
        return {"intact": not problems, "events": count, "problems": problems}

    @router.post("/tokens", tags=["server"], status_code=201)
    def create_token(context: Context, actor: Actor, body: TokenBody) -> dict[str, str]:
        """A token for another person; shown once, stored only as its hash."""
        with context.services.store.transaction() as connection:
            token = tokens.create_token(connection, body.owner)
            audit.record(connection, actor, "token.create", body.owner, {})
        return {"owner": body.owner, "token": token}

    return router


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
