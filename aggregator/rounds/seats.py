"""A secure round's machine state (``securephases.State``) read from and written back to the
database, inside the caller's transaction. Only what a step changed is written."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.rounds.securephases import Seat, State
from aggregator.storage.models import Node, Round, Task
from protocol.messages import Phase
from protocol.query import QuerySpec
from protocol.results import NodeStatus, RoundState


async def load(
    session: AsyncSession, round_id: str, *, lock: bool = False, only: str | None = None
) -> State | None:
    """The state of an open or closed secure round; ``lock`` locks its row (PostgreSQL), so
    that another aggregator process on the same database waits for this step. With ``only`` (a
    task id) it holds that task's seat alone and counts the others still owing a message."""
    row = await session.get(Round, round_id, with_for_update=lock, populate_existing=True)
    if row is None:
        return None
    others = 0
    if only is not None:
        others = (
            await session.scalar(
                select(func.count())
                .select_from(Task)
                .where(
                    Task.round_id == round_id,
                    Task.id != only,
                    Task.status == NodeStatus.PENDING.value,
                    Task.phase.is_not(None),
                )
            )
            or 0
        )
    query = (
        select(
            Task.id,
            Task.node_id,
            Node.key_id,
            Node.public_key,
            Task.status,
            Task.reason,
            Task.phase,
            Task.delivered_at,
            Task.keys,
            Task.shares,
            Task.body,
            Task.reveal,
            Task.received_at,
        )
        .join(Node, Node.id == Task.node_id)
        .where(Task.round_id == round_id)
        .order_by(Task.id)
    )
    if only is not None:
        query = query.where(Task.id == only)
    rows = (await session.execute(query)).all()
    seats = tuple(
        Seat(
            task_id=r[0],
            node_id=r[1],
            key_id=r[2],
            public_key=r[3],
            status=NodeStatus(r[4]),
            reason=r[5],
            phase=Phase(r[6]) if r[6] is not None else None,
            delivered=r[7] is not None,
            keys=r[8],
            shares=r[9],
            body=r[10],
            reveal=r[11],
            received_at=r[12],
        )
        for r in rows
    )
    return State(
        round_id=row.id,
        spec=QuerySpec.model_validate_json(row.spec),
        threshold=row.threshold or 0,
        deadline=row.deadline,
        seats=seats,
        open=row.state == RoundState.OPEN.value,
        phase=Phase(row.phase) if row.phase is not None else None,
        phase_deadline=row.phase_deadline,
        roster=tuple(json.loads(row.roster or "[]")),
        outcome=row.outcome,
        failure=row.failure,
        others_waiting=others,
    )


_TASK_COLUMNS = ("status", "reason", "phase", "keys", "shares", "body", "reveal", "received_at")


async def save(session: AsyncSession, before: State, after: State, now: Any) -> None:
    """Write what changed from ``before`` to ``after``."""
    changed: dict[str, dict[str, Any]] = {}
    for old, new in zip(before.seats, after.seats, strict=True):
        if old == new:
            continue
        values: dict[str, Any] = {}
        for column in _TASK_COLUMNS:
            value = getattr(new, column)
            if value != getattr(old, column):
                values[column] = value.value if hasattr(value, "value") else value
        changed[new.task_id] = values
    for task_id, values in changed.items():
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    values = {}
    if after.phase != before.phase:
        values["phase"] = after.phase.value if after.phase is not None else None
    if after.phase != before.phase or after.phase_deadline != before.phase_deadline:
        values["phase_deadline"] = after.phase_deadline
    if after.roster != before.roster:
        values["roster"] = json.dumps(list(after.roster))
    if after.outcome != before.outcome:
        values["outcome"] = after.outcome
    if after.failure != before.failure:
        values["failure"] = after.failure
    if after.open != before.open:
        values["state"] = RoundState.OPEN.value if after.open else RoundState.CLOSED.value
        values["closed_at"] = None if after.open else now
    if values:
        await session.execute(
            update(Round)
            .where(Round.id == after.round_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
