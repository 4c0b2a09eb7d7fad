"""The FastAPI application: every route under /api/v1, each declaring the permission it needs
(api/permissions.py), one error shape (api/errors.py). Handlers are thin: they call services
and shape JSON. The routes live one area per module."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from conveyor import __version__
from conveyor.api import (
    access_routes,
    app_routes,
    environment_routes,
    release_routes,
    retention_routes,
    run_routes,
)
from conveyor.api.context import ApiContext
from conveyor.api.errors import error_schemas, install_error_handlers
from conveyor.api.permissions import AuthorizedRoute, needs
from conveyor.console import admin as console_admin
from conveyor.console import oidc as console_oidc
from conveyor.console import pages as console_pages
from conveyor.console import runs as console_runs
from conveyor.domain.access import Permission

__all__ = ["ApiContext", "create_app"]


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Take data-science apps, APIs and reports from Dev through Test to Prod. "
        "Each operation names the permission it needs in `x-permission`.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    _declare_errors(app)
    app.state.context = context
    app.include_router(_public(), prefix="/api/v1")
    for module in (
        environment_routes,
        app_routes,
        release_routes,
        run_routes,
        access_routes,
        retention_routes,
    ):
        app.include_router(module.router, prefix="/api/v1")
    # The console beside the API, at the control address's root.
    for console in (console_pages, console_runs, console_admin, console_oidc):
        app.include_router(console.router)
    return app


def _declare_errors(app: FastAPI) -> None:
    """Put the error shape every route's error answers refer to into the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).update(error_schemas())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _public() -> APIRouter:
    router = APIRouter(route_class=AuthorizedRoute)

    @router.get("/health", tags=["server"], openapi_extra=needs(Permission.PUBLIC))
    def health() -> dict[str, str]:
        """Liveness, without a token."""
        return {"status": "ok", "version": __version__}

    return router
