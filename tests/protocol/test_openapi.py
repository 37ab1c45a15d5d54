"""Both apps' /openapi.json document their error answers as they are: RFC 9457 problem documents
(application/problem+json, the Problem schema), not FastAPI's application/json validation model;
and the statuses an operation really answers (401, 404, 429 …) are listed. The real answers of
the running apps validate against the documented schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from aggregator.app import create_app as create_aggregator
from aggregator.errors import ErrorCode as AggregatorCode
from node.app import create_app as create_node
from node.errors import ErrorCode as NodeCode
from protocol.http import PROBLEM_JSON
from protocol.openapi import with_problems
from tests.fedkit import make_aggregator
from tests.nodekit import make_node

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _spec(app: FastAPI) -> tuple[dict[str, Any], httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test")
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json(), client


@pytest.fixture
async def apps(
    tmp_path: Path,
) -> AsyncIterator[dict[str, tuple[dict[str, Any], httpx.AsyncClient]]]:
    aggregator = create_aggregator(make_aggregator(tmp_path / "aggregator", None))
    node_settings, _ = make_node(tmp_path / "node", f"sqlite:///{tmp_path / 'node.db'}")
    node = create_node(node_settings)
    async with aggregator.router.lifespan_context(aggregator), node.router.lifespan_context(node):
        found = {"aggregator": await _spec(aggregator), "node": await _spec(node)}
        try:
            yield found
        finally:
            for _, client in found.values():
                await client.aclose()


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.parametrize("name", ["aggregator", "node"])
async def test_every_error_answer_is_documented_as_a_problem(apps: Any, name: str) -> None:
    spec, _ = apps[name]
    codes = {c.value for c in (AggregatorCode if name == "aggregator" else NodeCode)}
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["properties"]["code"]["enum"]) == codes
    assert set(problem["required"]) == {"type", "title", "status", "code"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "HTTPValidationError" not in json.dumps(spec["paths"])
    for (method, path), operation in _operations(spec).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)


async def test_the_statuses_operations_answer_are_listed(apps: Any) -> None:
    aggregator = _operations(apps["aggregator"][0])
    node = _operations(apps["node"][0])

    def listed(ops: dict[tuple[str, str], Any], method: str, path: str) -> set[int]:
        return {int(s) for s in ops[(method, path)]["responses"] if int(s) >= 400}

    assert listed(aggregator, "POST", "/v1/enrol") >= {400, 401, 403, 409, 413, 422, 429}
    assert listed(aggregator, "GET", "/v1/rounds/{round_id}") >= {401, 403, 404, 422}
    assert listed(aggregator, "GET", "/v1/nodes") == {401, 403}
    assert listed(aggregator, "POST", "/v1/node/poll") >= {400, 401, 409, 413, 422}
    assert listed(aggregator, "GET", "/v1/health") == set()
    assert listed(aggregator, "GET", "/v1/ready") == {503}
    assert listed(node, "POST", "/v1/queries") >= {400, 401, 403, 409, 413, 422}


async def test_real_error_answers_match_the_documented_schema(apps: Any) -> None:
    for name, requests in {
        "aggregator": [
            ("GET", "/v1/nodes", None, 401),
            ("GET", "/v1/nothing", None, 404),
            ("POST", "/v1/enrol", b"{oops", 400),
            ("POST", "/v1/enrol", b"{}", 422),
        ],
        "node": [("POST", "/v1/queries", b"[]", 422), ("GET", "/v1/nothing", None, 404)],
    }.items():
        spec, client = apps[name]
        validator = jsonschema_rs.validator_for(spec["components"]["schemas"]["Problem"])
        for method, path, body, status in requests:
            response = await client.request(method, path, content=body)
            assert response.status_code == status, (name, path, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            validator.validate(response.json())


def test_with_problems_is_idempotent() -> None:
    spec: dict[str, Any] = {
        "paths": {
            "/x/{id}": {
                "get": {
                    "parameters": [{"in": "path", "name": "id"}],
                    "responses": {
                        "200": {"description": "OK"},
                        "422": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/HTTPValidationError"}
                                }
                            }
                        },
                    },
                }
            }
        },
        "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}}},
    }
    once = json.dumps(with_problems(spec, ["not_found"]), sort_keys=True)
    assert json.dumps(with_problems(spec, ["not_found"]), sort_keys=True) == once
    assert set(spec["paths"]["/x/{id}"]["get"]["responses"]) == {"200", "404", "422"}
    assert set(spec["components"]["schemas"]) == {"Problem"}
