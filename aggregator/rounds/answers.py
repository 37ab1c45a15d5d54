"""Answers to independent rounds: judged one by one as they arrive, stored in batches.

Every answer of a writer batch is stored with a handful of set-based statements (one read of
the tasks, the rounds and their pending counts; one ``executemany`` of the answers; one update
of the rounds that closed), and the round's phase machine (``independent``) decides each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.merge import screen
from aggregator.rounds import independent
from aggregator.rounds.known import Query
from aggregator.rounds.machine import Action
from aggregator.services import reports
from aggregator.services.writer import Batched
from aggregator.storage.models import Node, Round, Task
from protocol.messages import REFUSAL, BudgetStatus, QueryAnswer, Refusal, RefusalReason
from protocol.results import NodeStatus, RoundState

TASK = cast(Table, Task.__table__)
PENDING = aliased(Task)


def judge(
    message_type: str, payload: dict[str, Any], query: Query, accept_exact: bool
) -> tuple[NodeStatus, str | None, QueryAnswer | None]:
    """Classify a correctly signed message of an independent round (the answer, when it is
    one to merge). An answer to another query
    is rejected without a trace (it may be an old answer replayed by someone else); a signed
    answer to *this* query that is malformed is recorded as invalid, since only the node could
    have made it."""
    if payload.get("query_id") != query.query_id:
        raise AggregatorError(ErrorCode.ANSWER_MISMATCH, "the answer is for another query")
    if message_type == REFUSAL:
        try:
            refusal = Refusal.model_validate(payload)
        except ValidationError:
            return NodeStatus.INVALID, "malformed_refusal", None
        return NodeStatus.REFUSED, RefusalReason(refusal.reason).value, None
    try:
        answer = QueryAnswer.model_validate(payload)
    except ValidationError:
        return NodeStatus.INVALID, "malformed_answer", None
    if answer.query_hash != query.query_hash:
        return NodeStatus.INVALID, "wrong_query_hash", None
    flaw = screen(query.spec, answer, accept_exact=accept_exact)
    if flaw is not None:
        return NodeStatus.INVALID, flaw, None
    return NodeStatus.ANSWERED, None, answer


@dataclass(frozen=True, slots=True)
class Answer:
    """A node's judged message for its task, to be stored."""

    task_id: str
    round_id: str
    node_id: str
    raw: bytes
    status: NodeStatus
    reason: str | None
    budget: BudgetStatus | None
    now: datetime  # protocol time
    wall: datetime  # wall time, as the poll reports it is ordered against use


async def _store(session: AsyncSession, answers: Sequence[Answer]) -> list[Any]:
    task_ids = {a.task_id for a in answers}
    round_ids = {a.round_id for a in answers}
    if session.bind is not None and session.bind.dialect.name != "sqlite":
        # Lock the rounds first (another aggregator process may be storing answers to them),
        # so that the pending counts below are read after its commit. SQLite has one writer.
        await session.execute(
            select(Round.id).where(Round.id.in_(round_ids)).order_by(Round.id).with_for_update()
        )
    pending = (
        select(PENDING.round_id, func.count().label("n"))
        .where(PENDING.round_id.in_(round_ids), PENDING.status == NodeStatus.PENDING.value)
        .group_by(PENDING.round_id)
        .subquery()
    )
    rows = await session.execute(
        select(Task.id, Task.status, Task.body, Task.node_id, Task.round_id, Round.state)
        .add_columns(pending.c.n, *reports.NODE_COLUMNS)
        .join(Round, Round.id == Task.round_id)
        .join(Node, Node.id == Task.node_id)
        .outerjoin(pending, pending.c.round_id == Task.round_id)
        .where(Task.id.in_(task_ids))
    )
    tasks: dict[str, tuple[str, bytes | None]] = {}
    states: dict[str, independent.State] = {}
    nodes: dict[str, tuple[Any, ...]] = {}
    for task_id, status, body, node_id, round_id, state, count, *node in rows:
        tasks[task_id] = (status, body)
        states[round_id] = independent.State(state == RoundState.OPEN.value, count or 0)
        nodes[node_id] = tuple(node)
    results: list[Any] = []
    stored: list[dict[str, Any]] = []
    spent: list[reports.Signed] = []
    closed: dict[str, datetime] = {}
    for a in answers:
        if a.task_id not in tasks:
            results.append(AggregatorError(ErrorCode.TASK_NOT_FOUND))
            continue
        status, body = tasks[a.task_id]
        event = independent.Arrived(
            a.status, a.raw, body, status == NodeStatus.PENDING.value, a.budget is not None
        )
        states[a.round_id], actions = independent.step(states[a.round_id], event)
        if Action.STORE in actions:
            tasks[a.task_id] = (a.status.value, a.raw)
            stored.append(
                {
                    "b_id": a.task_id,
                    "b_status": a.status.value,
                    "b_reason": a.reason,
                    "b_body": a.raw,
                    "b_at": a.now,
                }
            )
        if Action.RECORD_BUDGET in actions and a.budget is not None:
            spent.append(reports.Signed(a.node_id, a.raw.decode("utf-8"), a.budget, a.wall))
        if Action.CLOSE in actions:
            closed[a.round_id] = a.now
        results.append(actions)
    if stored:
        await session.execute(
            update(TASK)
            .where(TASK.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                reason=bindparam("b_reason"),
                body=bindparam("b_body"),
                received_at=bindparam("b_at"),
                phase=None,
            ),
            stored,
        )
    if spent:
        await reports.record_spending(session, spent, nodes)
    for round_id, now in closed.items():
        await session.execute(
            update(Round)
            .where(Round.id == round_id)
            .values(state=RoundState.CLOSED.value, closed_at=now)
            .execution_options(synchronize_session=False)
        )
    return results


ANSWERS: Batched[Answer, tuple[Action, ...]] = Batched("answers", _store)
