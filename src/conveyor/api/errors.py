"""One JSON error shape for every failure:

    {"error": {"code": "policy_violation", "message": "prod takes no direct deploys: ..."}}

``code`` is stable (the error type's name in snake case) so clients can act on it; ``message``
is written for a person and says what to do. The HTTP status follows the type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor import errors
from conveyor.errors import error_code

STATUS: tuple[tuple[type[errors.ConveyorError], int], ...] = (
    (errors.PolicyViolation, 403),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidInput, 422),
    (errors.IntegrityError, 422),
    (errors.RuntimeFailure, 500),
    (errors.StorageError, 500),
)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable: the error type's name in snake case")
    message: str = Field(description="for a person: what went wrong and what to do")


class Error(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    # Declared as JSON whatever the route answers when it succeeds (e.g. JSON lines).
    shape = {"schema": {"$ref": "#/components/schemas/Error"}}
    return {"description": description, "content": {"application/json": shape}}


#: The error answers every operation that needs a token may give, as the OpenAPI document
#: declares them (each route adds them through api/permissions.py's AuthorizedRoute).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("no valid token (`unauthorized`)"),
    403: _error(
        "the user lacks the role (`forbidden`, naming it), or the pipeline's rules refuse the "
        "request (`policy_violation`)"
    ),
    404: _error("what the request names does not exist (`not_found`)"),
    409: _error("the request clashes with the current state (`conflict`, ...)"),
    422: _error("the request is not valid (`invalid_input`)"),
}


def error_schemas() -> dict[str, Any]:
    """The OpenAPI components ``Error`` (and what it holds) that ERROR_RESPONSES refer to."""
    schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "Error": schema}


def status_of(error: errors.ConveyorError) -> int:
    return next((status for kind, status in STATUS if isinstance(error, kind)), 500)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ConveyorError)
    async def conveyor_error(request: Request, exc: errors.ConveyorError) -> JSONResponse:
        return error_response(status_of(exc), error_code(type(exc)), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'] if part != 'body')}: {problem['msg']}"
            for problem in exc.errors()
        )
        return error_response(422, "invalid_input", f"the request is not valid: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not even decode the body (not UTF-8, ...)
            return error_response(
                422,
                "invalid_input",
                f"the request is not valid: its body is not JSON ({exc.detail})",
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (
            f"there is no {request.method} {request.url.path}; see /api/v1/openapi.json"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return error_response(exc.status_code, code, message)
