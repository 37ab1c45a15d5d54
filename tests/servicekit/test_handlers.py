"""The framework errors every service answers alike, on a small real FastAPI app."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from protocol.http import PROBLEM_JSON
from protocol.problems import ErrorInfo, build_catalogue
from servicekit.handlers import install_problem_handlers

pytestmark = pytest.mark.anyio


class Code(StrEnum):
    MALFORMED_JSON = "malformed_json"
    JSON_TOO_DEEP = "json_too_deep"
    JSON_NUMBER_INVALID = "json_number_invalid"
    JSON_STRING_INVALID = "json_string_invalid"
    INVALID_REQUEST = "invalid_request"
    BAD_SIGNATURE = "bad_signature"
    STALE_MESSAGE = "stale_message"
    REPLAYED_MESSAGE = "replayed_message"
    WRONG_MESSAGE_TYPE = "wrong_message_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal_error"


CATALOGUE = build_catalogue(Code, {Code.INTERNAL: ErrorInfo(500, "Broken.")})


def respond(
    code: Code,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = CATALOGUE[code].body(code.value, detail, **extra)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


class Item(BaseModel):
    n: int


def make_client() -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/items")
    async def add(item: Item) -> int:
        return item.n

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret data")

    install_problem_handlers(app, Code, respond, logging.getLogger("test.servicekit"))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_validation_errors_are_invalid_request() -> None:
    async with make_client() as client:
        response = await client.post("/items", json={"n": "x"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["code"] == "invalid_request" and body["errors"][0]["loc"] == ["body", "n"]


async def test_unknown_address_and_method() -> None:
    async with make_client() as client:
        assert (await client.get("/nowhere")).json()["code"] == "not_found"
        response = await client.get("/items")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


async def test_unexpected_errors_log_the_type_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="test.servicekit"):
        async with make_client() as client:
            response = await client.get("/boom")
    assert response.status_code == 500 and response.json()["code"] == "internal_error"
    assert "RuntimeError" in caplog.text and "secret data" not in caplog.text
    assert "secret data" not in response.text
