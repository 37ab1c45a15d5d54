"""The error side of both apps' OpenAPI documents: every 4xx (and the 503 of /v1/ready) is an
RFC 9457 problem document, ``application/problem+json`` with the ``Problem`` schema below.

FastAPI documents only its own 422, as ``application/json`` with its validation-error model, which
is not what the apps send. ``with_problems`` rewrites an app's generated document: it replaces
that 422 and adds the statuses each operation can answer, from what the operation takes (a
body: 413 and 422; a signed envelope: 400, 401 and 409; a path parameter: 404; a bearer token:
401 and 403) and from a per-operation list for the rest. Pure: a dict in, the same dict out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from protocol.http import PROBLEM_JSON, PROBLEM_TYPE_BASE

PROBLEM_REF = "#/components/schemas/Problem"
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def problem_schema(codes: Iterable[str]) -> dict[str, Any]:
    """The JSON schema of a problem document whose ``code`` is one of ``codes``."""
    return {
        "title": "Problem",
        "description": (
            "An RFC 9457 problem document. 'code' is the stable thing to program against; "
            "some codes add members of their own."
        ),
        "type": "object",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri", "example": PROBLEM_TYPE_BASE + "not_found"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": {"type": "string", "enum": sorted(codes)},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "What did not validate (never the input itself).",
                "items": {
                    "type": "object",
                    "properties": {
                        "loc": {"type": "array", "items": {"type": "string"}},
                        "msg": {"type": "string"},
                    },
                },
            },
            "retry_after_seconds": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": True,
    }


def _statuses(operation: Mapping[str, Any], path: str) -> set[int]:
    statuses: set[int] = set()
    body = operation.get("requestBody")
    if body is not None:
        statuses |= {413, 422}
        schemas = [c.get("schema", {}) for c in body.get("content", {}).values()]
        if any(s.get("title") == "Envelope" for s in schemas):
            statuses |= {400, 401, 409}  # malformed, badly signed, replayed
    if operation.get("parameters"):
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    if operation.get("security"):
        statuses |= {401, 403}
    return statuses


def with_problems(
    schema: dict[str, Any],
    codes: Iterable[str],
    extra: Mapping[tuple[str, str], Iterable[int]] | None = None,
) -> dict[str, Any]:
    """Document problem answers in ``schema`` (changed in place and returned); ``extra`` maps
    ``(METHOD, path)`` to further statuses an operation answers. Idempotent."""
    extra = extra or {}
    content = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            wanted = _statuses(operation, path) | set(extra.get((method.upper(), path), ()))
            wanted |= {int(s) for s in responses if s.isdigit() and int(s) >= 400}
            for status in sorted(wanted):
                responses[str(status)] = {
                    "description": HTTPStatus(status).phrase,
                    "content": content,
                }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problem_schema(codes)
    text = repr(schema.get("paths", {}))
    for name in _FASTAPI_ERROR_SCHEMAS:  # FastAPI's, no longer referenced
        if f"#/components/schemas/{name}'" not in text:
            components.pop(name, None)
    return schema


def install(
    app: Any,
    codes: Iterable[str],
    extra: Mapping[tuple[str, str], Iterable[int]] | None = None,
) -> None:
    """Make ``app`` (a FastAPI app) document its problem answers: its schema is generated
    once, on first request, as FastAPI does, and :func:`with_problems` runs on it that once."""
    generated = app.openapi
    codes = list(codes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with_problems(generated(), codes, extra)
        schema: dict[str, Any] = app.openapi_schema
        return schema

    app.openapi = openapi
