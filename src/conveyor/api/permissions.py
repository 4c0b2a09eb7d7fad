"""Every API route declares the permission it needs, and it is checked before the request body
is read or validated.

A route declares it next to its path, with ``needs(...)`` as its ``openapi_extra``, so the
OpenAPI document shows it too (``x-permission``)::

    @router.post(
        "/apps/{app}/environments/{environment}/deploys",
        openapi_extra=needs(Permission.DEPLOY, "path:environment"),
    )

Routers use ``AuthorizedRoute``, which refuses to build a route that declares nothing, and wraps
each handler: authenticate the bearer token (401), find the environment(s) the permission holds
in, check the user's roles there (403 naming the role), and only then let FastAPI read the body.

Where an environment comes from:

``path:NAME`` / ``query:NAME``
    a path or query parameter (the query parameter is required);
``query?:NAME``
    an optional query parameter: checked when given; without it the handler shows only the
    environments the user may see (``visible``);
``release:PARAM`` / ``operation:PARAM``
    the environment of the release or operation whose id is that path parameter (every
    environment, for an operation over all of them);
``promotion``
    the environment a promotion goes to: the ``to`` query parameter, else the next one;
``user:PARAM`` (with SELF_OR_ADMIN)
    not an environment: the user named by that path parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from conveyor.api.errors import ERROR_RESPONSES
from conveyor.api.limits import MAX_ID
from conveyor.domain.access import Permission, User, refusal
from conveyor.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from conveyor.services import pipeline, tokens
from conveyor.services.context import Services
from conveyor.storage import catalog, operations, releases
from conveyor.storage.operations import EVERY_ENVIRONMENT
from conveyor.storage.tokens import Token

_KEY = "x-permission"
_KINDS = ("path", "query", "query?", "release", "operation", "promotion", "user")


@dataclass(frozen=True)
class Need:
    """What one route needs: a permission, where its environments come from, and a note for
    the permission table (what the handler narrows further)."""

    permission: Permission
    sources: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        where = {
            "path": "{}",
            "query": "{}",
            "query?": "{}",
            "release": "the release's environment",
            "operation": "the operation's environment",
            "promotion": "the target environment",
        }
        if self.permission is Permission.PUBLIC:
            text = "none"
        elif self.permission is Permission.SELF_OR_ADMIN:
            text = "the user named, or admin"
        elif self.permission.per_environment:
            places = []
            for source in self.sources:
                kind, _, name = source.partition(":")
                places.append(where[kind].format(f"`{name}`"))
            text = f"`{self.permission}` in " + " and ".join(places)
        else:
            text = f"`{self.permission}`"
        return text + (f"; {self.note}" if self.note else "")


def needs(permission: Permission, *sources: str, note: str = "") -> dict[str, Any]:
    """The ``openapi_extra`` that declares a route's permission."""
    for source in sources:
        kind = source.partition(":")[0]
        if kind not in _KINDS:
            raise ValueError(f"unknown source of an environment: {source!r}")
    if permission.per_environment and not sources:
        raise ValueError(f"{permission} holds per environment: say where the environment is")
    return {_KEY: {"permission": str(permission), "from": list(sources), "note": note}}


def need_of(route: APIRoute) -> Need:
    if not (route.openapi_extra or {}).get(_KEY):
        raise TypeError(
            f"route {sorted(route.methods or ())} {route.path} declares no permission: give it "
            "openapi_extra=needs(...) (see conveyor/api/permissions.py)"
        )
    return declared_need(route.openapi_extra or {})


def declared_need(operation: dict[str, Any]) -> Need:
    """The Need an operation declares (its ``x-permission``, as in the OpenAPI document)."""
    declared = operation[_KEY]
    return Need(
        Permission(declared["permission"]), tuple(declared["from"]), declared.get("note", "")
    )


class AuthorizedRoute(APIRoute):
    """An APIRoute whose handler checks the declared permission before anything else. The
    API's routes authenticate with a bearer token; the console's (console/routes.py) with a
    session cookie, by overriding ``authenticate``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        declared = (kwargs.get("openapi_extra") or {}).get(_KEY)
        if declared and declared["permission"] != str(Permission.PUBLIC):
            kwargs["responses"] = {**ERROR_RESPONSES, **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)
        self.need = need_of(self)

    def authenticate(self, request: Request) -> tuple[User, object]:
        """Who the request comes from, and the credential that says so; Unauthorized."""
        services: Services = request.app.state.context.services
        return tokens.authenticate(services, _bearer(request))

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        need = need_of(self)

        async def authorized(request: Request) -> Response:
            if need.permission is not Permission.PUBLIC:
                user, credential, environments = await run_in_threadpool(self._check, request, need)
                request.state.user = user
                request.state.token = credential
                request.state.checked_environments = environments
            return await handler(request)

        return authorized

    def _check(self, request: Request, need: Need) -> tuple[User, object, list[str]]:
        user, credential = self.authenticate(request)
        return user, credential, authorize(request, need, user)


def current_user(request: Request) -> User:
    user: User = request.state.user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def current_token(request: Request) -> Token:
    """The record of the token the request came with."""
    token: Token = request.state.token
    return token


CurrentToken = Annotated[Token, Depends(current_token)]


def checked_environments(request: Request) -> list[str]:
    """The environments the permission was checked in, as resolved then: a handler acts in
    these, never in ones it resolves again (the state may have moved on since)."""
    environments: list[str] = request.state.checked_environments
    return environments


CheckedEnvironments = Annotated[list[str], Depends(checked_environments)]


def visible(user: User, environments: Iterable[str]) -> list[str]:
    """Those of ``environments`` the user may see."""
    return user.environments_with(Permission.VIEW, environments)


def seen_environments_of(services: Services, user: User, app: str) -> list[str]:
    """The environments the user may see, for an app that must exist (NotFound otherwise)."""
    with services.store.transaction() as connection:
        if not catalog.app_exists(connection, app):
            raise NotFound(f"there is no app {app!r}")
        names = [e.name for e in catalog.list_environments(connection)]
    return visible(user, names)


def authorize(request: Request, need: Need, user: User) -> list[str]:
    """Whether ``user`` may make ``request``: Forbidden naming the role otherwise. Returns the
    environments the permission was checked in."""
    services: Services = request.app.state.context.services
    if need.permission is Permission.SELF_OR_ADMIN:
        subject = _subject(request, need)
        if user.name != subject and not user.admin:
            raise Forbidden(refusal(user, need.permission))
        return []
    if not need.permission.per_environment:
        if not user.can(need.permission):
            raise Forbidden(refusal(user, need.permission))
        return []
    environments = _environments(request, need, services)
    for environment in environments:
        if not user.can(need.permission, environment):
            raise Forbidden(refusal(user, need.permission, environment))
    return environments


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "this request has no token: send `Authorization: Bearer <token>` (the CLI does "
            "after `conveyor login`)"
        )
    return token.strip()


def _subject(request: Request, need: Need) -> str:
    for source in need.sources:
        kind, _, name = source.partition(":")
        if kind == "user":
            return str(request.path_params[name])
    raise TypeError("a SELF_OR_ADMIN route names its user with user:PARAM")


def _environments(request: Request, need: Need, services: Services) -> list[str]:
    """The environments the permission must hold in; each one exists (NotFound otherwise)."""
    found: list[str] = []
    for source in need.sources:
        kind, _, name = source.partition(":")
        if kind == "path":
            found.append(str(request.path_params[name]))
        elif kind in ("query", "query?"):
            value = request.query_params.get(name)
            if value is None and kind == "query":
                raise InvalidInput(f"the request needs the query parameter {name!r}")
            if value is not None:
                found.append(value)
        elif kind == "release":
            with services.store.transaction() as connection:
                release_id = _number(request.path_params[name], "release")
                found.append(releases.get_release(connection, release_id).environment)
        elif kind == "operation":
            operation_id = _number(request.path_params[name], "operation")
            where = operations.get_operation(services.store.engine, operation_id).environment
            if where == EVERY_ENVIRONMENT:  # e.g. a repair of every environment: all of them
                with services.store.transaction() as connection:
                    found.extend(e.name for e in catalog.list_environments(connection))
            else:
                found.append(where)
        elif kind == "promotion":
            app = str(request.path_params["app"])
            found.append(pipeline.promotion_target(services, app, request.query_params.get("to")))
    with services.store.transaction() as connection:
        for environment in found:
            catalog.get_environment(connection, environment)  # NotFound names the known ones
    return found


def _number(text: str, what: str) -> int:
    """An id from a path, read before FastAPI validates the path: bounded the same way."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_ID:
        raise InvalidInput(
            f"{text[:40]!r} is not a {what} id: ids are whole numbers from 1 to {MAX_ID}"
        )
    return number
