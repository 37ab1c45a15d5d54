"""The exception handlers every service's app installs for the framework's own errors: a request
that fails validation, an address or method that does not exist, and anything unexpected. Each
becomes an RFC 9457 problem document from the service's catalogue, through the service's own
``respond`` (which decides its headers). A service's own exception class keeps its own handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

C = TypeVar("C", bound=StrEnum)
C_contra = TypeVar("C_contra", bound=StrEnum, contravariant=True)


class Respond(Protocol[C_contra]):
    """A service's problem response: the catalogue entry for ``code`` as a JSON response."""

    def __call__(
        self,
        code: C_contra,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> JSONResponse: ...


def install_problem_handlers(
    app: FastAPI, codes: type[C], respond: Respond[C], log: logging.Logger
) -> None:
    """Answer validation errors, unknown addresses and methods, and unexpected exceptions with
    the shared codes ``invalid_request``, ``not_found``, ``method_not_allowed`` and
    ``internal_error`` of ``codes``. An unexpected exception is logged by type only: its message
    may hold data."""
    invalid, internal = codes("invalid_request"), codes("internal_error")
    by_status = {404: codes("not_found"), 405: codes("method_not_allowed")}

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        return respond(invalid, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = by_status.get(exc.status_code, invalid)
        allow = (exc.headers or {}).get("Allow")  # a 405 names the methods that do work
        return respond(code, headers={"Allow": allow} if allow else None)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", type(exc).__name__)
        return respond(internal)
