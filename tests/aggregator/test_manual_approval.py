"""Manual approval across a federation: the aggregator shows a node as waiting for approval; the
answer arrives when the operator approves before the deadline; a declined query is a refusal; an
undecided one times out. Every step is in the node's audit log."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aggregator.services.registry import AWAITING_APPROVAL
from node.services import audit
from node.services.admin_auth import set_password
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AuditEvent, PendingApproval
from protocol.results import NodeStatus, RoundResult, RoundState
from tests.adminkit import PASSWORD, admin_client
from tests.factories import Row
from tests.fedkit import Federation, federation

pytestmark = pytest.mark.anyio
MANUAL = {"approval": "manual", "poll_wait_seconds": 0.5, "unsafe_disable_noise": True}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rows(offset: int) -> list[Row]:
    return [Row(person=p, event_date=date(2025, 5, p)) for p in range(1 + offset, 6 + offset)]


async def _result(fed: Federation, round_id: str) -> RoundResult:
    response = await fed.client.get(f"/v1/rounds/{round_id}", headers=fed.as_(fed.analyst))
    assert response.status_code == 200
    return RoundResult.model_validate(response.json())


async def _until_waiting(fed: Federation, round_id: str, count: int) -> RoundResult:
    for _ in range(600):  # a guard against a hanging test, not a deadline
        result = await _result(fed, round_id)
        waiting = [n for n in result.coverage.nodes if n.reason == AWAITING_APPROVAL]
        if len(waiting) == count:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"coverage never showed {count} node(s) waiting: {result.coverage}")


def _kinds(database_url: str) -> list[tuple[str, dict[str, Any]]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEvent.kind, AuditEvent.body).order_by(AuditEvent.seq))
            return [(kind, json.loads(body)) for kind, body in rows]
    finally:
        engine.dispose()


def set_passwords(fed: Federation) -> None:
    """Give every node's admin pages the test password."""
    for node in fed.nodes:
        engine = make_engine(node.database_url)
        set_password(make_sessionmaker(engine), PASSWORD)
        engine.dispose()


async def _decide(fed: Federation, index: int, query_id: str, decision: str) -> None:
    async with admin_client(fed.node_apps[index]) as admin:
        assert (await admin.login()).status_code == 303
        page = await admin.page("/admin/approvals")
        assert f'id="q-{query_id}"' in page.text
        # The plain-language description, with the cost as a share of the budget.
        assert "Bezoeken per maand per discipline in 2025" in page.text
        assert "kost 5% van het budget van dit jaar" in page.text
        response = await admin.submit("/admin/approvals", f"/admin/approvals/{query_id}/{decision}")
        assert response.status_code == 303
        done = await admin.page(response.headers["location"])
        assert ("Goedgekeurd" if decision == "approve" else "Geweigerd") in done.text


async def test_approve_and_decline_before_the_deadline(tmp_path: Path) -> None:
    async with federation(
        tmp_path,
        [_rows(0), _rows(5)],
        node_settings=MANUAL,
        agg_settings={"unsafe_accept_exact_answers": True},
    ) as fed:
        set_passwords(fed)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
            deadline_seconds=60,
        )
        waiting = await _until_waiting(fed, created.round_id, 2)
        assert waiting.state is RoundState.OPEN
        assert all(n.status is NodeStatus.PENDING for n in waiting.coverage.nodes)
        query_id = waiting.spec.query_id
        await _decide(fed, 0, query_id, "approve")
        await _decide(fed, 1, query_id, "decline")
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED
    by_name = {n.institution: n for n in result.coverage.nodes}
    assert by_name["Instelling 0"].status is NodeStatus.ANSWERED
    assert by_name["Instelling 1"].status is NodeStatus.REFUSED
    assert by_name["Instelling 1"].reason == "declined_by_operator"
    # Noise is off: the answered total is node 0's five visits.
    visits = result.measures[0]
    assert sum(visits.estimates) == 5
    approved = [k for k, _ in _kinds(fed.nodes[0].database_url)]
    declined = [k for k, _ in _kinds(fed.nodes[1].database_url)]
    assert approved[-3:] == [audit.APPROVAL_WAITING, audit.APPROVED, audit.ANSWER]
    assert declined[-3:] == [audit.APPROVAL_WAITING, audit.DECLINED, audit.REFUSAL]


async def test_an_undecided_query_expires_at_the_deadline(tmp_path: Path) -> None:
    async with federation(tmp_path, [_rows(0)], node_settings=MANUAL) as fed:
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
            deadline_seconds=3,
        )
        await _until_waiting(fed, created.round_id, 1)
        await fed.expire(created.round_id, silent=1)  # the operator never decides
        result = await fed.wait(created.round_id)
        assert result.coverage.nodes[0].status is NodeStatus.TIMED_OUT
        assert result.coverage.nodes[0].reason == AWAITING_APPROVAL
        for _ in range(300):  # the node marks it expired at the same deadline
            if _kinds(fed.nodes[0].database_url)[-1][0] == audit.APPROVAL_EXPIRED:
                break
            await asyncio.sleep(0.1)
    kinds = [k for k, _ in _kinds(fed.nodes[0].database_url)]
    assert kinds[-2:] == [audit.APPROVAL_WAITING, audit.APPROVAL_EXPIRED]
    assert audit.ANSWER not in kinds
    engine = make_engine(fed.nodes[0].database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(PendingApproval.status)) == "expired"
    finally:
        engine.dispose()


async def test_a_secure_round_waits_for_approval_at_its_first_phase(tmp_path: Path) -> None:
    """Approval gates a secure round's key phase; once every node's operator approved, the
    round runs its four phases and the masked sum equals the pooled total exactly."""
    rows = [_rows(0), _rows(5), _rows(10)]
    async with federation(
        tmp_path,
        rows,
        node_settings=MANUAL,
        agg_settings={"unsafe_accept_exact_answers": True},
    ) as fed:
        set_passwords(fed)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05}, deadline_seconds=60
        )
        assert created.mode == "secure"
        waiting = await _until_waiting(fed, created.round_id, 3)
        assert waiting.phase == "keys"
        for index in range(3):
            await _decide(fed, index, waiting.spec.query_id, "approve")
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None
    assert result.coverage.answered == 3
    assert all(n.reason is None for n in result.coverage.nodes)
    assert sum(result.measures[0].estimates) == 15  # five visits at each institution
    for node in fed.nodes:
        kinds = [k for k, _ in _kinds(node.database_url)]
        assert kinds[-3:] == [audit.APPROVAL_WAITING, audit.APPROVED, audit.ANSWER]
