"""Error replies: a person-readable ``detail`` with the right status, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tasks.errors import Conflict, InvalidInput, NeedsConfirmation, TaskError, TaskNotFound, VersionConflict

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TaskError)
    async def task_error(_request: Request, exc: TaskError) -> JSONResponse:
        conflict = isinstance(exc, VersionConflict | Conflict)
        code = 404 if isinstance(exc, TaskNotFound) else 409 if conflict else 422
        body: dict[str, object] = {"detail": exc.message}
        if isinstance(exc, InvalidInput):
            body["field"] = exc.field
        if isinstance(exc, NeedsConfirmation):  # the hook for a confirmation dialog
            body |= {"needs_confirmation": True, "count": exc.count, "action": exc.action}
        return JSONResponse(body, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query"))
            problems.append(f"{where or 'request'}: {error.get('msg', 'invalid value')}")
        return JSONResponse(
            {"detail": "; ".join(problems), "errors": [_safe(e) for e in exc.errors()]}, status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "Something went wrong on our side; it has been logged."}, 500)


def _safe(error: dict[str, object]) -> dict[str, object]:
    return {k: error[k] for k in ("loc", "msg", "type") if k in error}
