"""What nodes report about themselves, written in batches: every poll carries a signed report
(budget, policy, tasks awaiting approval), and every answer the budget after it. Both also keep
the node's budget high-water mark, its own signed message with the highest spend (a proof sent
back to a node restored from an old backup, docs/how-to/backup).

Many nodes poll and answer at once, so these are ``Batched`` writer kinds: one ``SELECT`` of
the nodes concerned and one ``executemany`` per kind and batch, not an ORM object per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.services.registry import AWAITING_APPROVAL
from aggregator.services.writer import Batched, Writer
from aggregator.storage.models import Node, Task
from protocol.messages import BudgetStatus, NodeReport, Poll
from protocol.results import NodeStatus

PROOF_UNITS = 1_000_000_000  # the node ledger's integer units of ρ
NODE = cast(Table, Node.__table__)


def _units(budget: BudgetStatus) -> int:
    return round(budget.spent_rho * PROOF_UNITS)


@dataclass(frozen=True, slots=True)
class Signed:
    """A message ``signed`` by node ``node_id`` at ``at`` that states its ``budget``."""

    node_id: str
    signed: str
    budget: BudgetStatus
    at: datetime


@dataclass(slots=True)
class _Row:
    report: str | None
    report_at: datetime | None
    proof: str | None
    period: str | None
    units: int | None
    report_changed: bool = False
    proof_changed: bool = False


async def _rows(session: AsyncSession, node_ids: set[str]) -> dict[str, _Row]:
    found = await session.execute(select(Node.id, *NODE_COLUMNS).where(Node.id.in_(node_ids)))
    return {r[0]: _Row(*r[1:]) for r in found}


def _proof(row: _Row, message: Signed) -> str | None:
    """Keep the message when it is the highest spend seen for the node's latest period.
    Returns the kept proof when the node now reports less than it."""
    units = _units(message.budget)
    period = message.budget.period
    if (
        row.period is None
        or period > row.period
        or (period == row.period and units > (row.units or 0))
    ):
        row.proof, row.period, row.units = message.signed, period, units
        row.proof_changed = True
        return None
    if period == row.period and units < (row.units or 0):
        return row.proof
    return None


async def _write(
    session: AsyncSession, rows: dict[str, _Row], last_seen: dict[str, datetime]
) -> None:
    """One ``executemany`` per combination of what changed (usually one per batch)."""
    groups: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
    for node_id, r in rows.items():
        seen = last_seen.get(node_id)
        shape = (r.report_changed or seen is not None, r.proof_changed, seen is not None)
        if not any(shape):
            continue
        groups.setdefault(shape, []).append(
            {
                "b_id": node_id,
                "b_report": r.report,
                "b_report_at": r.report_at,
                "b_seen": seen,
                "b_proof": r.proof,
                "b_period": r.period,
                "b_units": r.units,
            }
        )
    for (report, proof, polled), params in groups.items():
        values: dict[str, Any] = {}
        if report:
            values.update(report=bindparam("b_report"), report_at=bindparam("b_report_at"))
        if polled:
            values["last_seen_at"] = bindparam("b_seen")
        if proof:
            values.update(
                budget_proof=bindparam("b_proof"),
                budget_proof_period=bindparam("b_period"),
                budget_proof_units=bindparam("b_units"),
            )
        statement = update(NODE).where(NODE.c.id == bindparam("b_id")).values(values)
        await session.execute(statement, params)


NODE_COLUMNS = (
    Node.report,
    Node.report_at,
    Node.budget_proof,
    Node.budget_proof_period,
    Node.budget_proof_units,
)


async def record_spending(
    session: AsyncSession,
    messages: Sequence[Signed],
    loaded: dict[str, tuple[Any, ...]] | None = None,
) -> None:
    """Answers: the budget part of each node's stored report, and its proof. ``loaded``: the
    nodes' ``NODE_COLUMNS`` by node id, when the caller read them already."""
    if loaded is None:
        rows = await _rows(session, {m.node_id for m in messages})
    else:
        rows = {node_id: _Row(*values) for node_id, values in loaded.items()}
    for message in messages:
        row = rows.get(message.node_id)
        if row is None:
            continue
        _proof(row, message)
        stored = _report(row.report)
        if stored is None or (row.report_at is not None and row.report_at > message.at):
            continue
        row.report = stored.model_copy(update={"budget": message.budget}).model_dump_json()
        row.report_at = message.at
        row.report_changed = True
    await _write(session, rows, {})


def _report(text: str | None) -> NodeReport | None:
    if text is None:
        return None
    try:
        return NodeReport.model_validate_json(text)
    except ValidationError:
        return None


@dataclass(frozen=True, slots=True)
class PollReport:
    message: Signed
    report: NodeReport
    awaiting: tuple[str, ...]


async def _record_polls(session: AsyncSession, polls: Sequence[PollReport]) -> list[str | None]:
    rows = await _rows(session, {p.message.node_id for p in polls})
    last_seen: dict[str, datetime] = {}
    proofs: list[str | None] = []
    for poll in polls:
        node_id = poll.message.node_id
        row = rows.get(node_id)
        if row is None:
            proofs.append(None)
            continue
        row.report = poll.report.model_dump_json()
        row.report_at = poll.message.at
        last_seen[node_id] = poll.message.at
        proofs.append(_proof(row, poll.message))
        if poll.awaiting:
            await _mark_awaiting(session, node_id, poll.awaiting)
    await _write(session, rows, last_seen)
    return proofs


async def _mark_awaiting(session: AsyncSession, node_id: str, task_ids: Sequence[str]) -> None:
    """Mark this node's pending tasks that wait for its operator's approval (the node's poll
    lists them; a secure phase's task id carries a ".phase" suffix). The mark goes when the
    task settles or its node sends the phase message (aggregator/rounds/securephases.py)."""
    waiting = {t.split(".", 1)[0] for t in task_ids}
    await session.execute(
        update(Task)
        .where(
            Task.node_id == node_id,
            Task.id.in_(waiting),
            Task.status == NodeStatus.PENDING.value,
        )
        .values(reason=AWAITING_APPROVAL)
        .execution_options(synchronize_session=False)
    )


POLLS: Batched[PollReport, str | None] = Batched("poll reports", _record_polls)


async def record_poll(
    writer: Writer, node_id: str, poll: Poll, signed: str, at: datetime
) -> str | None:
    """Store what a poll reports (budget, policy, tasks awaiting approval). Returns the node's
    earlier budget proof when it now reports less spent: it must raise its ledger first."""
    message = Signed(node_id, signed, poll.report.budget, at)
    return await writer.add(POLLS, PollReport(message, poll.report, tuple(poll.awaiting_approval)))
