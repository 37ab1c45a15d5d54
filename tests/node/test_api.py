"""The node's HTTP API in process (httpx.ASGITransport, lifespan entered), on SQLite and PostgreSQL.

Every response of every test passes through ``check_clean``: no stack trace, no file path, no
node secret and no pseudonym ever leaves the node.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select

from node.app import create_app
from node.identity import load_signing_key
from node.services import ledger
from node.settings import NodeSettings
from node.storage.db import SchemaOutOfDate, current_revision, make_engine
from node.storage.models import Person
from protocol.messages import ANSWER, QUERY, REFUSAL, QueryAnswer, Refusal
from protocol.signing import Envelope, SigningKey, sign, verify_once
from tests.factories import Row, write_rows
from tests.nodekit import (
    budget_tables,
    give_identifiers,
    make_node,
    make_spec,
    query_body,
    request_of,
    signed_query,
)
from tests.protocol.test_json_gate import HOSTILE_BODIES

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"
MAX_BODY = 4096
BUDGET = 0.2


@dataclass
class Node:
    settings: NodeSettings
    querier: SigningKey
    client: httpx.AsyncClient
    app: FastAPI
    engine: Engine

    @property
    def key(self) -> SigningKey:
        return load_signing_key(self.settings.signing_key_path)

    async def post(self, body: bytes | AsyncIterator[bytes], **headers: str) -> httpx.Response:
        return await self.client.post(
            "/v1/queries", content=body, headers={"content-type": "application/json", **headers}
        )


def leak_check(
    settings: NodeSettings, engine: Engine
) -> Callable[[httpx.Response], Awaitable[None]]:
    secret = settings.secret_path.read_text("ascii").strip()
    with engine.connect() as conn:
        pseudonyms = list(conn.scalars(select(Person.pseudonym)))
    forbidden = ["Traceback", 'File "', "site-packages", str(settings.home), secret, *pseudonyms]

    async def check_clean(response: httpx.Response) -> None:
        text = (await response.aread()).decode("utf-8", errors="replace")
        for item in forbidden:
            assert item not in text, f"{response.request.url} leaks {item[:20]!r}"
        for value in response.headers.values():
            assert secret not in value

    return check_clean


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def node(tmp_path: Path, db_url: str) -> AsyncIterator[Node]:
    settings, querier = make_node(
        tmp_path, db_url, budget_rho=BUDGET, max_body_bytes=MAX_BODY, unsafe_disable_noise=True
    )
    engine = make_engine(settings.database_url)
    write_rows(engine, [Row(person=p, event_date=date(2025, 3, p)) for p in range(1, 6)])
    give_identifiers(engine, settings, {p: f"klant{p}@example.nl" for p in range(1, 6)})
    app = create_app(settings)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    hooks = {"response": [leak_check(settings, engine)]}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://node.test", event_hooks=hooks
            ) as client,
        ):
            yield Node(settings, querier, client, app, engine)
    finally:
        engine.dispose()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"]
    return body


def decode_answer(node: Node, body: bytes) -> QueryAnswer:
    envelope = Envelope.model_validate_json(body)
    return QueryAnswer.model_validate(verify_once(envelope, ANSWER, node.key.public))


# -- read-only endpoints ------------------------------------------------------------------------


async def test_health(node: Node) -> None:
    response = await node.client.get("/v1/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "institution": "Testtheater",
        "key_id": node.key.key_id,
        "catalogue_version": "1",
    }


async def test_catalogue_and_reports(node: Node) -> None:
    catalogue = (await node.client.get("/v1/catalogue")).json()
    assert catalogue["version"] == "1"
    assert "artform" in {d["name"] for d in catalogue["dimensions"]}
    reports = (await node.client.get("/v1/reports")).json()
    assert "standard" in {r["name"] for r in reports}
    assert all(r["title"]["nl"] and r["title"]["en"] for r in reports)


async def test_budget(node: Node) -> None:
    before = (await node.client.get("/v1/budget")).json()
    assert before["cap_rho"] == BUDGET and before["spent_rho"] == 0
    response = await node.post(query_body(node.querier, make_spec(rho=0.05)))
    assert response.status_code == 200
    after = (await node.client.get("/v1/budget")).json()
    assert after["period"] == before["period"] == str(datetime.now(UTC).year)
    assert after["spent_rho"] == pytest.approx(0.05)


async def test_openapi_and_docs(node: Node) -> None:
    schema = await node.client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/v1/health", "/v1/catalogue", "/v1/budget", "/v1/reports", "/v1/queries"} <= set(paths)
    docs = await node.client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")


# -- queries ------------------------------------------------------------------------------------


async def test_a_signed_query_is_answered(node: Node) -> None:
    spec = make_spec("q-http-0001", measures=make_spec().measures)
    response = await node.post(query_body(node.querier, spec, "alice"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-publieksdata-replayed"] == "false"
    answer = decode_answer(node, response.content)
    assert answer.query_id == "q-http-0001"
    assert answer.query_hash == spec.digest()
    assert answer.measures[0].values[0] == 5  # five theatre visits, exact (noise is off)
    tables = budget_tables(node.engine)
    assert [row[0] for row in tables.entries] == ["q-http-0001"]
    assert tables.entries[0][2] == "alice"
    assert tables.entries[0][4] == hashlib.sha256(response.content).hexdigest()


async def test_a_retried_query_gets_the_same_bytes(node: Node) -> None:
    spec = make_spec("q-http-retry")
    first = await node.post(query_body(node.querier, spec))
    second = await node.post(query_body(node.querier, spec))  # a new envelope, the same query
    assert first.status_code == second.status_code == 200
    assert second.headers["x-publieksdata-replayed"] == "true"
    assert second.content == first.content
    assert budget_tables(node.engine).ledger_units == ledger.to_units(0.05)


async def test_a_chunked_body_within_the_limit_is_read(node: Node) -> None:
    body = query_body(node.querier, make_spec())

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    assert (await node.post(chunks())).status_code == 200


# -- problem documents --------------------------------------------------------------------------


async def test_body_over_the_limit_by_content_length(node: Node) -> None:
    response = await node.post(b"{" + b" " * MAX_BODY + b"}")
    assert_problem(response, 413, "body_too_large")


async def test_body_over_the_limit_while_streaming(node: Node) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = await node.post(chunks())
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body_too_large")


async def test_malformed_json(node: Node) -> None:
    for body in (b"{not json", b"", b"\xff\xfe\x00garbage", b'{"a": '):
        assert_problem(await node.post(body), 400, "malformed_json")


async def test_hostile_json_gets_a_problem_document_not_a_500(node: Node) -> None:
    for body, code in HOSTILE_BODIES.items():
        status = 400
        if len(body) > MAX_BODY:  # this node's limit is small; the limit comes first
            status, code = 413, "body_too_large"
        for content_type in ("application/json", "text/plain", "multipart/form-data; boundary=x"):
            response = await node.post(body, **{"content-type": content_type})
            assert_problem(response, status, code)
    # The same numbers inside a correctly signed query: refused before verification.
    signed = query_body(node.querier, make_spec(rho=0.01))
    for number in (b"NaN", b"Infinity", b"1e400", b"9007199254740993"):
        body = signed.replace(b'"rho":0.01', b'"rho":' + number, 1)
        assert body != signed
        assert_problem(await node.post(body), 400, "json_number_invalid")
    assert (await node.post(signed)).status_code == 200  # the node still answers


async def test_json_that_is_not_an_envelope(node: Node) -> None:
    for document in ({"hello": "world"}, [1, 2, 3], "envelope", None, {"type": "query"}):
        response = await node.post(json.dumps(document).encode())
        body = assert_problem(response, 422, "invalid_request")
        assert body["errors"]
        assert all(set(error) == {"loc", "msg"} for error in body["errors"])


async def test_an_invalid_query_inside_a_valid_signature(node: Node) -> None:
    marker = "ZZ-do-not-echo-ZZ"
    payload = {
        "spec": {
            "title": marker * 20,
            "period": {"start": "2025-12-31", "end": "2025-01-01"},
            "privacy": {"rho": 0.1},
            "group_by": ["artform"],
        },
        "analyst": "a",
    }
    envelope = sign(QUERY, payload, node.querier)
    response = await node.post(envelope.model_dump_json().encode())
    body = assert_problem(response, 422, "invalid_query")
    assert marker not in response.text
    assert all(set(error) == {"loc", "msg"} for error in body["errors"])
    messages = " ".join(error["msg"] for error in body["errors"])
    assert "swap them" in messages  # actionable
    assert {tuple(e["loc"][:2]) for e in body["errors"]} >= {("spec", "title"), ("spec", "period")}
    assert budget_tables(node.engine).entries == []


async def test_an_unknown_key(node: Node) -> None:
    stranger = SigningKey.generate()
    assert_problem(await node.post(query_body(stranger, make_spec())), 401, "unknown_key")


async def test_a_tampered_payload(node: Node) -> None:
    envelope = signed_query(node.querier, make_spec(rho=0.05))
    document = envelope.model_dump(mode="json")
    document["payload"]["spec"]["privacy"]["rho"] = 0.01
    response = await node.post(json.dumps(document).encode())
    assert_problem(response, 401, "bad_signature")
    document = envelope.model_dump(mode="json")
    document["signature"] = document["signature"][::-1]
    assert_problem(await node.post(json.dumps(document).encode()), 401, "bad_signature")
    assert budget_tables(node.engine).entries == []


async def test_a_stale_message(node: Node) -> None:
    age = timedelta(seconds=node.settings.message_max_age_seconds + 60)
    old = signed_query(node.querier, make_spec(), now=datetime.now(UTC) - age)
    assert_problem(await node.post(old.model_dump_json().encode()), 401, "stale_message")
    future = signed_query(node.querier, make_spec(), now=datetime.now(UTC) + timedelta(hours=1))
    assert_problem(await node.post(future.model_dump_json().encode()), 401, "stale_message")


async def test_a_replayed_message(node: Node) -> None:
    body = query_body(node.querier, make_spec("q-replayed-1"))
    assert (await node.post(body)).status_code == 200
    assert_problem(await node.post(body), 409, "replayed_message")
    assert budget_tables(node.engine).ledger_units == ledger.to_units(0.05)


async def test_the_wrong_message_type(node: Node) -> None:
    envelope = sign(ANSWER, request_of(make_spec()).model_dump(mode="json"), node.querier)
    assert_problem(await node.post(envelope.model_dump_json().encode()), 400, "wrong_message_type")


def check_signed_refusal(node: Node, body: dict[str, Any], query_id: str, reason: str) -> None:
    assert body["reason"] == reason
    assert body["detail"]
    refusal = Refusal.model_validate(
        verify_once(Envelope.model_validate(body["refusal"]), REFUSAL, node.key.public)
    )
    assert refusal.query_id == query_id
    assert refusal.reason.value == reason
    assert refusal.message == body["detail"]


async def test_a_policy_refusal_is_a_signed_403(node: Node) -> None:
    spec = make_spec("q-too-costly", rho=0.6)
    body = assert_problem(await node.post(query_body(node.querier, spec)), 403, "refused")
    check_signed_refusal(node, body, "q-too-costly", "policy_cost_too_high")
    assert budget_tables(node.engine).entries == []


async def test_a_budget_refusal_is_a_signed_403_that_changes_nothing(node: Node) -> None:
    spend_all = await node.post(query_body(node.querier, make_spec("q-spend-all", rho=BUDGET)))
    assert spend_all.status_code == 200
    before = budget_tables(node.engine)
    response = await node.post(query_body(node.querier, make_spec("q-one-more", rho=0.01)))
    body = assert_problem(response, 403, "refused")
    check_signed_refusal(node, body, "q-one-more", "budget_exhausted")
    assert not any(char.isdigit() for char in body["detail"])  # no budget figures
    assert "spent_rho" not in response.text and "cap_rho" not in response.text
    assert budget_tables(node.engine) == before


async def test_not_found_and_method_not_allowed(node: Node) -> None:
    assert_problem(await node.client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(await node.client.get("/"), 404, "not_found")
    assert_problem(await node.client.get("/v1/queries"), 405, "method_not_allowed")
    response = await node.client.delete("/v1/budget")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_an_unexpected_error_is_a_bare_500(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> None:
        raise RuntimeError(f"database file {node.settings.home} is haunted")

    monkeypatch.setattr(node.app.state.node.answerer, "answer", explode)
    body = assert_problem(
        await node.post(query_body(node.querier, make_spec())), 500, "internal_error"
    )
    assert "haunted" not in json.dumps(body)


# -- start-up -----------------------------------------------------------------------------------


def test_the_app_refuses_to_start_on_an_old_schema(tmp_path: Path, db_url: str) -> None:
    settings = NodeSettings(home=tmp_path, database_url=db_url)
    app = create_app(settings)

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pytest.fail("the app started on an empty database")

    with pytest.raises(SchemaOutOfDate, match="publieksdata node db upgrade"):
        anyio.run(start)
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None  # and it did not migrate on its own
    finally:
        engine.dispose()
