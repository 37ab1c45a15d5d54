"""Prometheus metrics, readiness and logs, on both services, in process: the figures on
/metrics agree with the databases, request timings are labelled by route template (never by a
concrete id), readiness fails on an out-of-date schema, and JSON log lines carry no exception
text."""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from protocol.observability import JsonFormatter
from protocol.results import NodeStatus
from tests.factories import Row
from tests.fedkit import federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_after_a_round(tmp_path: Path) -> None:
    rows = [[Row(person=p, event_date=date(2025, 2, p)) for p in range(1, 6)]] * 2
    async with federation(tmp_path, rows, node_settings={"poll_wait_seconds": 0.5}) as fed:
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"}
        )
        result = await fed.wait(created.round_id)
        assert all(n.status is NodeStatus.ANSWERED for n in result.coverage.nodes)
        response = await fed.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        got = samples(response.text)
        assert (
            got[
                (
                    "publieksdata_aggregator_rounds_total",
                    (("mode", "independent"), ("state", "closed")),
                )
            ]
            == 1
        )
        assert got[("publieksdata_aggregator_node_tasks_total", (("status", "answered"),))] == 2
        assert got[("publieksdata_aggregator_connected_nodes", ())] == 2
        assert got[("publieksdata_aggregator_nodes", (("status", "active"),))] == 2
        routes = {dict(labels).get("route") for (name, labels) in got if name.endswith("_count")}
        assert "/v1/rounds/{round_id}" in routes and "/v1/node/poll" in routes
        assert not any(created.round_id in str(route) for route in routes)
        ready = await fed.client.get("/v1/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}

        import httpx

        node_app = fed.node_apps[0]
        transport = httpx.ASGITransport(node_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as client:
            node_metrics = samples((await client.get("/metrics")).text)
            assert (await client.get("/v1/ready")).status_code == 200
        period = node_app.state.node.answerer.budget_period()
        assert node_metrics[("publieksdata_node_answers_total", (("mode", "independent"),))] == 1
        assert node_metrics[
            ("publieksdata_node_budget_spent_rho", (("period", period),))
        ] == pytest.approx(0.05)
        assert node_metrics[("publieksdata_node_aggregator_connected", ())] == 1
        assert node_metrics[("publieksdata_node_audit_events", ())] == 1


async def test_readiness_fails_when_the_schema_is_out_of_date(tmp_path: Path) -> None:
    rows = [[Row(person=1, event_date=date(2025, 2, 1))]]
    async with federation(tmp_path, rows) as fed:
        from sqlalchemy import create_engine, text

        engine = create_engine(fed.settings.database_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'a0001'"))
        engine.dispose()
        response = await fed.client.get("/v1/ready")
        assert response.status_code == 503 and response.json()["code"] == "not_ready"


def test_json_log_lines_have_no_exception_text() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("publieksdata.test.json")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("klant42@example.nl is not valid")
        except ValueError:
            logger.exception("import failed for a row")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "import failed for a row"
    assert line["error"] == "ValueError" and line["level"] == "error"
    assert "klant42" not in stream.getvalue()
