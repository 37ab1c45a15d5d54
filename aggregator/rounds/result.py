"""A round's result as analysts see it: coverage per node and, once closed with its quorum met,
the merged estimates (independent) or the estimates of the sum (secure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import null, select
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.merge import estimates, merge_measures, screen
from aggregator.rounds import unmask
from aggregator.rounds.cache import LRU
from aggregator.storage.models import Node, Round, Task
from protocol.calibration import ExpectedNoise, expected_noise
from protocol.messages import QueryAnswer
from protocol.query import Measure, Mode, QuerySpec
from protocol.ratios import derived
from protocol.results import Coverage, NodeOutcome, NodeStatus, RoundResult, RoundState


class Parsed:
    """Answers this process parsed and screened when they arrived, by round and task, with
    their bytes: merging a closed round reuses one when the stored bytes are the same, instead
    of parsing it again. Bounded: the few rounds most recently answered (a round whose result
    nobody reads soon is parsed again from the database when it is)."""

    def __init__(self, rounds: int = 8) -> None:
        self._rounds: LRU[dict[str, tuple[bytes, QueryAnswer]]] = LRU(rounds)

    def keep(self, round_id: str, task_id: str, raw: bytes, answer: QueryAnswer) -> None:
        answers = self._rounds.get(round_id)
        if answers is None:
            answers = {}
            self._rounds.put(round_id, answers)
        answers[task_id] = (raw, answer)

    def peek(self, round_id: str) -> dict[str, tuple[bytes, QueryAnswer]]:
        return self._rounds.get(round_id) or {}

    def take(self, round_id: str) -> dict[str, tuple[bytes, QueryAnswer]]:
        return self._rounds.pop(round_id) or {}


async def load_result(
    session: AsyncSession,
    round_id: str,
    parsed: Mapping[str, tuple[bytes, QueryAnswer]] | None = None,
) -> RoundResult | None:
    """A round's result, or None for an unknown round. The stored answers are read only once the
    round has closed (an open round shows coverage, no figures); ``parsed`` are answers parsed
    already (see ``Parsed``)."""
    row = await session.get(Round, round_id)
    if row is None:
        return None
    closed = row.state == RoundState.CLOSED.value and row.mode != Mode.SECURE.value
    body = Task.body if closed else null().label("body")
    tasks = (
        await session.execute(
            select(Task.id, Task.node_id, Task.status, Task.reason, Node.institution, body)
            .join(Node, Node.id == Task.node_id)
            .where(Task.round_id == round_id)
            .order_by(Node.institution, Node.id)
        )
    ).all()
    return build_result(row, [Settled(*t) for t in tasks], parsed or {})


class Settled:
    """One task as the result needs it."""

    __slots__ = ("body", "id", "institution", "node_id", "reason", "status")

    def __init__(
        self,
        id: str,
        node_id: str,
        status: str,
        reason: str | None,
        institution: str,
        body: bytes | None = None,
    ) -> None:
        self.id, self.node_id, self.status, self.reason = id, node_id, status, reason
        self.institution, self.body = institution, body


def _stored_answer(
    spec: QuerySpec, body: bytes, expected: Mapping[Measure, ExpectedNoise]
) -> QueryAnswer | str:
    """A stored answer, or why it cannot be merged. Answers are checked when they arrive; this
    check again when the round is merged keeps one bad row (stored by an older version, or
    edited in the database) from breaking the round for the analyst: it shows as an invalid
    node instead."""
    try:
        answer = QueryAnswer.model_validate(json.loads(body)["payload"])
    except (ValueError, TypeError, KeyError, ValidationError):
        return "malformed_answer"
    return screen(spec, answer, accept_exact=True, expected=expected) or answer


def build_result(
    row: Round,
    tasks: Sequence[Settled],
    parsed: Mapping[str, tuple[bytes, QueryAnswer]] | None = None,
) -> RoundResult:
    spec = QuerySpec.model_validate_json(row.spec)
    state = RoundState(row.state)
    answers: list[QueryAnswer] = []
    rejected: dict[str, str] = {}
    if row.mode != Mode.SECURE.value and state is RoundState.CLOSED:
        expected = expected_noise(spec)  # once for all the round's answers
        for task in tasks:
            if task.status == NodeStatus.ANSWERED.value and task.body is not None:
                known = (parsed or {}).get(task.id)
                stored = (
                    screen(spec, known[1], accept_exact=True, expected=expected) or known[1]
                    if known is not None and known[0] == task.body
                    else _stored_answer(spec, task.body, expected)
                )
                if isinstance(stored, str):
                    rejected[task.id] = stored
                else:
                    answers.append(stored)
    outcomes = tuple(
        NodeOutcome(
            node_id=task.node_id,
            institution=task.institution,
            status=NodeStatus.INVALID if task.id in rejected else NodeStatus(task.status),
            reason=rejected.get(task.id, task.reason),
        )
        for task in tasks
    )
    counts = {status: 0 for status in NodeStatus}
    for outcome in outcomes:
        counts[outcome.status] += 1
    coverage = Coverage(
        total=len(outcomes),
        answered=counts[NodeStatus.ANSWERED],
        refused=counts[NodeStatus.REFUSED],
        timed_out=counts[NodeStatus.TIMED_OUT],
        invalid=counts[NodeStatus.INVALID],
        pending=counts[NodeStatus.PENDING],
        nodes=outcomes,
    )
    quorum_met = coverage.answered >= row.quorum
    measures: tuple[Any, ...] = ()
    ratios: tuple[Any, ...] = ()
    noise = all(a.noise for a in answers)
    if row.mode == Mode.SECURE.value:
        quorum_met = row.outcome is not None
        if row.outcome is not None:
            summed = unmask.Outcome.from_json(row.outcome)
            noise = summed.noise
            measures = tuple(
                estimates(m, summed.values[m.value], summed.variance[m.value])
                for m in spec.measures
            )
            ratios = derived(spec, measures)
    elif state is RoundState.CLOSED and quorum_met and answers:
        measures = merge_measures(spec, answers)
        ratios = derived(spec, measures)
    return RoundResult(
        round_id=row.id,
        spec=spec,
        analyst=row.analyst,
        state=state,
        created_at=row.created_at,
        deadline=row.deadline,
        closed_at=row.closed_at,
        quorum=row.quorum,
        quorum_met=quorum_met,
        partial=state is RoundState.CLOSED and coverage.answered < coverage.total,
        noise=noise,
        coverage=coverage,
        group_by=spec.group_by,
        cells=tuple(spec.cells()),
        measures=measures,
        ratios=ratios,
        mode=Mode(row.mode),
        threshold=row.threshold,
        phase=row.phase,
        failure=row.failure,
    )
