"""One JSON error shape for every failure:

    {"error": {"code": "policy_violation", "message": "prod takes no direct deploys: ..."}}

``code`` is stable (the error type's name in snake case) so clients can act on it; ``message``
is written for a person and says what to do. The HTTP status follows the type."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (
            f"there is no {request.method} {request.url.path}; see /api/v1/openapi.json"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return error_response(exc.status_code, code, message)
