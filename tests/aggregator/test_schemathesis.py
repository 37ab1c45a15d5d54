"""Property-based API tests: schemathesis generates requests from the aggregator's and the node's
own OpenAPI documents, valid and invalid, with and without a token.

Whatever arrives, neither app answers 5xx, and every 4xx is an RFC 9457 problem document with
type, title, status and code. The apps run in process with their lifespans (schemathesis's ASGI
transport starts and ends them); the tests use schemathesis's Python API in plain functions. An
unhandled exception inside an app fails the test too: that transport re-raises it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.python import asgi

from aggregator.app import create_app as create_aggregator
from aggregator.services import enrolment
from aggregator.services.tokens import Role
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from node.app import create_app as create_node
from protocol.http import PROBLEM_JSON
from protocol.messages import JoinRequest
from protocol.signing import SigningKey, public_key_to_text
from tests.fedkit import make_aggregator, make_token
from tests.nodekit import make_node

EXAMPLES = 12  # per operation and generation mode; the whole file stays well under a minute
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def check(case: Case[Any], failures: list[str]) -> None:
    response = case.call()
    where = f"{case.method} {case.formatted_path}"
    status = response.status_code
    if status >= 500:
        failures.append(f"{where}: {status} {response.text[:200]}")
    elif status >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        if content_type != PROBLEM_JSON:
            failures.append(f"{where}: {status} with content-type {content_type!r}")
            return
        body: Any = json.loads(response.content)
        if not isinstance(body, dict) or not {"type", "title", "status", "code"} <= set(body):
            failures.append(f"{where}: {status} problem lacks members: {response.text[:200]}")
        elif body["status"] != status or not body["type"].endswith("/" + body["code"]):
            failures.append(f"{where}: {status} inconsistent problem: {response.text[:200]}")


def fuzz(app: FastAPI, headers: dict[str, str] | None = None) -> list[str]:
    """Run every operation of the app's OpenAPI document; return what went wrong."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert operations
    for operation in operations:
        for mode in MODES:
            strategy = operation.as_strategy(generation_mode=mode, headers=headers)

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # report, don't shrink: keeps it fast
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Case[Any]) -> None:
                check(case, failures)

            try:
                run()
            except Unsatisfiable:  # an operation without inputs has no invalid form
                assert mode is GenerationMode.NEGATIVE, operation.label
    return sorted(set(failures))


@pytest.fixture
def apps_stop() -> Iterator[None]:
    try:
        yield
    finally:
        asgi.shutdown_lifespans()


async def _enrol_one_node(database_url: str) -> None:
    """One enrolled node, so that valid round requests can be created, not only refused."""
    engine = make_async_engine(database_url)
    try:
        async with make_async_sessionmaker(engine)() as session, session.begin():
            code, _ = await enrolment.create_invite(
                session, "Schouwburg", "test", timedelta(hours=1)
            )
            key = SigningKey.generate()
            join = JoinRequest(
                invite=code, institution="Schouwburg", public_key=public_key_to_text(key.public)
            )
            await enrolment.redeem(session, join, datetime.now(UTC))
    finally:
        await engine.dispose()


@pytest.mark.usefixtures("apps_stop")
def test_the_aggregator_api_under_fuzzing(tmp_path: Path) -> None:
    agg_settings = make_aggregator(tmp_path / "aggregator", max_body_bytes=64 * 1024)
    anyio.run(_enrol_one_node, agg_settings.database_url)
    analyst = anyio.run(make_token, agg_settings, Role.ANALYST, "analist")
    admin = anyio.run(make_token, agg_settings, Role.ADMIN, "admin")
    app = create_aggregator(agg_settings)
    failures = fuzz(app)
    failures += fuzz(app, {"authorization": f"Bearer {analyst}"})
    failures += fuzz(app, {"authorization": f"Bearer {admin}"})
    assert failures == []


@pytest.mark.usefixtures("apps_stop")
def test_the_node_api_under_fuzzing(tmp_path: Path) -> None:
    node_settings, _ = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    app = create_node(node_settings)
    body = app.openapi()["paths"]["/v1/queries"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["title"] == "Envelope"
    assert fuzz(app) == []
