"""Manual approval across a federation: the aggregator shows a node as waiting for approval; the
answer arrives when the operator approves before the deadline; a declined query is a refusal; an
undecided one times out. Every step is in the node's audit log."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aggregator.services.registry import AWAITING_APPROVAL
from aggregator.storage.models import Round
from node.services import audit
from node.services.admin_auth import set_password
from node.storage.db import make_engine, make_sessionmaker
from node.storage.models import AuditEvent, PendingApproval
from node.web.i18n import moment
from protocol.results import NodeStatus, RoundResult, RoundState
from publieksdata import render
from tests.adminkit import PASSWORD, admin_client
from tests.factories import Row
from tests.fedkit import Federation, assert_problem, federation

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
        assert waiting.phase == "announce"
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


# --- a secure round waits for approval before its protocol phases (issue 16) ------------------


async def _round_row(fed: Federation, round_id: str) -> Round:
    async with fed.app.state.aggregator.factory() as session:
        row = await session.get(Round, round_id)
        assert row is not None
        return row


def _approval_deadline(database_url: str) -> datetime:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            deadline = conn.scalar(select(PendingApproval.deadline))
    finally:
        engine.dispose()
    assert deadline is not None
    return deadline if deadline.tzinfo is not None else deadline.replace(tzinfo=UTC)


async def _card(fed: Federation, index: int, query_id: str) -> str:
    """The text of the approval card for this query on node ``index``'s admin page."""
    async with admin_client(fed.node_apps[index]) as admin:
        assert (await admin.login()).status_code == 303
        page = (await admin.page("/admin/approvals")).text
    found = re.search(rf'<li class="card" id="q-{re.escape(query_id)}">(.*?)</li>', page, re.S)
    assert found is not None, "no approval card for the query"
    return found.group(1)


async def _decide_late(fed: Federation, index: int, query_id: str) -> str:
    """Approve after the deadline (the form as it was on the page); returns the page after."""
    async with admin_client(fed.node_apps[index]) as admin:
        assert (await admin.login()).status_code == 303
        response = await admin.submit("/admin/approvals", f"/admin/approvals/{query_id}/approve")
        assert response.status_code == 303
        return (await admin.page(response.headers["location"])).text


async def test_a_late_approval_in_a_secure_round_is_too_late_and_says_so(tmp_path: Path) -> None:
    """The "seen" sequence: three manual nodes, a secure round of 300 s; two operators approve,
    the third does not decide in time. The card shows the deadline the node really has (the
    round's ANNOUNCE deadline, which the aggregator keeps too), the analyst sees the third node
    as waiting for approval (not "dropped before masking"), the round sums the two exactly, and
    the late approval says it came too late instead of "approved: it is answered"."""
    async with federation(
        tmp_path,
        [_rows(0), _rows(5), _rows(10)],
        node_settings=MANUAL,
        agg_settings={"unsafe_accept_exact_answers": True},
    ) as fed:
        set_passwords(fed)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05}, deadline_seconds=300
        )
        waiting = await _until_waiting(fed, created.round_id, 3)
        query_id = waiting.spec.query_id
        row = await _round_row(fed, created.round_id)
        assert row.phase_deadline is not None
        phase_end = row.phase_deadline.replace(tzinfo=UTC)
        for node in fed.nodes:  # what the node waits for is what the aggregator waits for
            assert _approval_deadline(node.database_url) == phase_end
        assert moment(phase_end, "nl") in await _card(fed, 2, query_id)
        assert row.phase == "announce"
        assert phase_end - fed.clock.now() == timedelta(seconds=300)
        await _decide(fed, 0, query_id, "approve")
        await _decide(fed, 1, query_id, "approve")
        await fed.expire(created.round_id, silent=1)  # node 2's operator has not decided
        page = await _decide_late(fed, 2, query_id)
        assert "Te laat" in page and "Goedgekeurd" not in page
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None
    by_name = {n.institution: n for n in result.coverage.nodes}
    assert by_name["Instelling 2"].status is NodeStatus.TIMED_OUT
    assert by_name["Instelling 2"].reason == AWAITING_APPROVAL
    assert "wacht op goedkeuring" in render.reason_text(by_name["Instelling 2"].reason, "nl")
    assert result.coverage.answered == 2
    assert sum(result.measures[0].estimates) == 10  # noise off: nodes 0 and 1, five visits each
    kinds = [k for k, _ in _kinds(fed.nodes[2].database_url)]
    assert kinds[-2:] == [audit.APPROVAL_WAITING, audit.APPROVAL_EXPIRED]
    assert audit.ANSWER not in kinds


async def test_an_approval_after_the_old_key_phase_time_is_in_time(tmp_path: Path) -> None:
    """Before, a secure round gave a manual node only its key phase (a quarter of the round's
    time, 75 s of 300 s) to be approved. Now the node has the whole approval window: approved
    at 100 s, it is in the round and the masked sum is exact."""
    async with federation(
        tmp_path,
        [_rows(0), _rows(5), _rows(10)],
        node_settings=MANUAL,
        agg_settings={"unsafe_accept_exact_answers": True},
    ) as fed:
        set_passwords(fed)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05}, deadline_seconds=300
        )
        waiting = await _until_waiting(fed, created.round_id, 3)
        query_id = waiting.spec.query_id
        await _decide(fed, 0, query_id, "approve")
        await _decide(fed, 1, query_id, "approve")
        await fed.settled(created.round_id, silent=1)
        fed.clock.advance(100)  # past the old 75 s, well before the approval deadline
        await _decide(fed, 2, query_id, "approve")
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None
    assert result.coverage.answered == 3
    assert all(n.reason is None for n in result.coverage.nodes)
    assert sum(result.measures[0].estimates) == 15


async def test_the_approval_window_is_its_own_setting_and_may_be_days(tmp_path: Path) -> None:
    """``approval_deadline_seconds`` sets the ANNOUNCE deadline (two days here); the protocol
    phases get ``deadline_seconds`` after it. An operator approving after a day is in time."""
    days = 2 * 86400
    async with federation(
        tmp_path,
        [_rows(0), _rows(5)],
        node_settings=MANUAL,
        agg_settings={"unsafe_accept_exact_answers": True},
    ) as fed:
        set_passwords(fed)
        refused = await fed.client.post(
            "/v1/rounds",
            json={
                "report": {"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"},
                "approval_deadline_seconds": days,
            },
            headers=fed.as_(fed.analyst),
        )
        assert_problem(refused, 422, "invalid_request")
        start = fed.clock.now()
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.05},
            deadline_seconds=60,
            approval_deadline_seconds=days,
        )
        assert created.deadline - start == timedelta(seconds=days + 60)
        waiting = await _until_waiting(fed, created.round_id, 2)
        for node in fed.nodes:
            assert _approval_deadline(node.database_url) - start == timedelta(seconds=days)
        fed.clock.advance(86400)
        for index in range(2):
            await _decide(fed, index, waiting.spec.query_id, "approve")
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.failure is None
    assert sum(result.measures[0].estimates) == 10
