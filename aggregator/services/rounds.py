"""Rounds: one query sent to many nodes, with a deadline and a quorum.

A round is created in one transaction together with one task per node; the nodes' long-polls
are then woken. A task is signed when it is handed to its node, so its signature is always
fresh. The node's signed answer or refusal is stored verbatim. The round closes when every node
has settled or at the deadline, whichever comes first; the aggregator never polls a node.
Everything a round needs survives a restart: the deadline timers are rebuilt from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.merge import derived, merge_measures
from aggregator.services import registry
from aggregator.services.notify import Notifier
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.models import Node, Round, Task
from protocol.messages import (
    ANSWER,
    REFUSAL,
    TASK,
    NodeReport,
    QueryAnswer,
    QueryRequest,
    Refusal,
    RefusalReason,
)
from protocol.query import Mode, QuerySpec
from protocol.results import (
    Coverage,
    NodeOutcome,
    NodeStatus,
    RoundResult,
    RoundState,
)
from protocol.signing import (
    Envelope,
    SignatureError,
    SigningKey,
    public_key_from_text,
    sign,
    verify_once,
)

log = logging.getLogger("publieksdata.aggregator")
V = TypeVar("V")


class LRU(Generic[V]):
    """A small least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class WouldRefuse:
    node_id: str
    institution: str
    reason: str


def precheck(spec: QuerySpec, node: Node, pending: dict[str, float]) -> str | None:
    """The reason a node would refuse ``spec``, judged from its last signed report, or None."""
    if node.report is None:
        return None  # never reported: send, and let the node decide
    report = NodeReport.model_validate_json(node.report)
    cost = spec.privacy.rho_charged
    policy = report.policy
    if policy.allowed_dimensions is not None:
        used = set(spec.group_by) | set(spec.filters)
        if not used <= set(policy.allowed_dimensions):
            return RefusalReason.POLICY_DIMENSION.value
    if spec.cell_count > policy.max_cells:
        return RefusalReason.POLICY_CELLS.value
    if cost > policy.max_rho_per_query * (1 + 1e-9):
        return RefusalReason.POLICY_COST.value
    remaining = registry.remaining_estimate(node, pending)
    if remaining is not None and cost > remaining * (1 + 1e-9) + 1e-12:
        return RefusalReason.BUDGET_EXHAUSTED.value
    return None


class Rounds:
    def __init__(
        self,
        settings: AggregatorSettings,
        factory: async_sessionmaker[AsyncSession],
        writer: Writer,
        notifier: Notifier,
        key: SigningKey,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.writer = writer
        self.notifier = notifier
        self.key = key
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Caches, bounded: the QueryRequest JSON of open rounds, and merged closed rounds.
        self._requests: LRU[dict[str, Any]] = LRU(1024)
        self._results: LRU[RoundResult] = LRU(64)

    # --- creating ---------------------------------------------------------------------------

    async def create(
        self,
        spec: QuerySpec,
        analyst: str,
        node_ids: list[str] | None,
        deadline_seconds: int | None,
        quorum: int | None,
    ) -> str:
        if spec.mode is Mode.SECURE:
            raise AggregatorError(
                ErrorCode.INVALID_QUERY,
                "secure aggregation is not available yet; use mode 'independent'",
            )
        seconds = deadline_seconds or self.settings.default_deadline_seconds
        if not 1 <= seconds <= self.settings.max_deadline_seconds:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                f"deadline_seconds must be between 1 and {self.settings.max_deadline_seconds}",
            )
        round_id = str(uuid.uuid4())
        spec = spec.model_copy(update={"query_id": f"pd-{round_id}"})
        now = datetime.now(UTC)

        async def insert(session: AsyncSession) -> list[str]:
            nodes = await registry.active_nodes(session, node_ids)
            if node_ids is not None:
                missing = sorted(set(node_ids) - {n.id for n in nodes})
                if missing:
                    raise AggregatorError(
                        ErrorCode.UNKNOWN_NODE, f"not enrolled: {', '.join(missing)}"
                    )
            if not nodes:
                raise AggregatorError(ErrorCode.NO_NODES)
            if len(nodes) > self.settings.max_nodes_per_round:
                raise AggregatorError(ErrorCode.INVALID_REQUEST, "too many nodes for one round")
            least = self.settings.min_quorum
            if len(nodes) < least:
                raise AggregatorError(
                    ErrorCode.INVALID_REQUEST,
                    f"a round needs at least {least} institutions, so that no result shows one "
                    "institution's figure",
                )
            need = quorum if quorum is not None else max(least, math.ceil(len(nodes) / 2))
            if not least <= need <= len(nodes):
                raise AggregatorError(
                    ErrorCode.INVALID_REQUEST, f"quorum must be between {least} and {len(nodes)}"
                )
            pending = await registry.committed_since_report(session)
            refusing = [
                WouldRefuse(n.id, n.institution, reason)
                for n in nodes
                if (reason := precheck(spec, n, pending)) is not None
            ]
            if refusing:
                raise AggregatorError(
                    ErrorCode.WOULD_BE_REFUSED,
                    f"{len(refusing)} of {len(nodes)} nodes would refuse; leave them out with "
                    "'nodes' or ask for less",
                    nodes=[
                        {"node_id": r.node_id, "institution": r.institution, "reason": r.reason}
                        for r in refusing
                    ],
                )
            session.add(
                Round(
                    id=round_id,
                    query_id=spec.query_id,
                    query_hash=spec.digest(),
                    spec=spec.model_dump_json(),
                    analyst=analyst,
                    created_at=now,
                    deadline=now + timedelta(seconds=seconds),
                    quorum=need,
                    state=RoundState.OPEN.value,
                )
            )
            await session.flush()
            session.add_all(
                Task(
                    id=str(uuid.uuid4()),
                    round_id=round_id,
                    node_id=n.id,
                    status=NodeStatus.PENDING.value,
                    cost_rho=spec.privacy.rho_charged,
                    created_at=now,
                )
                for n in nodes
            )
            return [n.id for n in nodes]

        targets = await self.writer.run(insert)
        self.schedule(round_id, now + timedelta(seconds=seconds))
        self.notifier.wake_nodes(targets)
        return round_id

    # --- delivering -------------------------------------------------------------------------

    def _request_json(self, row: Round) -> dict[str, Any]:
        cached = self._requests.get(row.id)
        if cached is None:
            spec = json.loads(row.spec)
            cached = QueryRequest(
                spec=QuerySpec.model_validate(spec), analyst=row.analyst
            ).model_dump(mode="json")
            self._requests.put(row.id, cached)
        return cached

    async def pending_for(
        self, node_id: str, key_id: str, in_flight: Sequence[str]
    ) -> list[dict[str, Any]]:
        """This node's unsettled tasks in open rounds, signed now; skips tasks it is answering."""
        async with self.factory() as session:
            rows = (
                await session.execute(
                    select(Task.id, Round)
                    .join(Round, Round.id == Task.round_id)
                    .where(
                        Task.node_id == node_id,
                        Task.status == NodeStatus.PENDING.value,
                        Round.state == RoundState.OPEN.value,
                    )
                    .order_by(Round.created_at)
                )
            ).all()
        skip = set(in_flight)
        envelopes = []
        delivered = []
        for task_id, row in rows:
            if task_id in skip:
                continue
            payload = {
                "task_id": task_id,
                "round_id": row.id,
                "node_key_id": key_id,
                "deadline": row.deadline.isoformat(),
                "request": self._request_json(row),
            }
            envelopes.append(sign(TASK, payload, self.key).model_dump(mode="json"))
            delivered.append(task_id)
        if delivered:
            self._mark_delivered(delivered)
        return envelopes

    def _mark_delivered(self, task_ids: list[str]) -> None:
        now = datetime.now(UTC)

        async def mark(session: AsyncSession) -> None:
            await session.execute(
                update(Task)
                .where(Task.id.in_(task_ids), Task.delivered_at.is_(None))
                .values(delivered_at=now)
            )

        async def run() -> None:
            try:
                await self.writer.run(mark)
            except Exception as exc:  # bookkeeping only; the task itself is safe in the DB
                log.warning("could not record delivery: %s", type(exc).__name__)

        self._spawn(run())

    # --- receiving --------------------------------------------------------------------------

    async def accept(self, task_id: str, raw: bytes) -> None:
        """Check a node's signed answer or refusal for this task and store it. Raises
        AggregatorError for anything that is not this node's answer to this task's query."""
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST, "the body is not a signed message"
            ) from None
        async with self.factory() as session:
            found = (
                await session.execute(
                    select(Task, Round, Node)
                    .join(Round, Round.id == Task.round_id)
                    .join(Node, Node.id == Task.node_id)
                    .where(Task.id == task_id)
                )
            ).first()
        if found is None:
            raise AggregatorError(ErrorCode.TASK_NOT_FOUND)
        _task, row, node = found
        if node.status != "active":
            raise AggregatorError(ErrorCode.UNKNOWN_KEY)
        if envelope.key_id != node.key_id:
            raise AggregatorError(ErrorCode.WRONG_NODE)
        if envelope.type not in (ANSWER, REFUSAL):
            raise AggregatorError(ErrorCode.WRONG_MESSAGE_TYPE)
        try:
            payload = verify_once(envelope, envelope.type, public_key_from_text(node.public_key))
        except SignatureError:
            raise AggregatorError(ErrorCode.BAD_SIGNATURE) from None
        status, reason, budget = self._judge(envelope.type, payload, row)
        now = datetime.now(UTC)

        async def store(session: AsyncSession) -> str:
            current = await session.get(Task, task_id)
            round_row = await session.get(Round, row.id)
            assert current is not None and round_row is not None
            if current.body is not None:  # settled by the node itself
                return "same" if current.body == raw else "answered"
            if (
                round_row.state != RoundState.OPEN.value
                or current.status != NodeStatus.PENDING.value
            ):
                return "closed"  # timed out at the deadline: the answer came too late
            current.status = status.value
            current.reason = reason
            current.body = raw
            current.received_at = now
            if budget is not None:
                await registry.record_budget(session, node.id, budget, now)
            await session.flush()
            left = await session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.round_id == row.id, Task.status == NodeStatus.PENDING.value)
            )
            if left == 0:
                round_row.state = RoundState.CLOSED.value
                round_row.closed_at = now
                return "closed_now"
            return "stored"

        outcome = await self.writer.run(store)
        if outcome == "same":
            return  # a retry of an answer already stored: fine
        if outcome == "answered":
            raise AggregatorError(ErrorCode.ALREADY_ANSWERED)
        if outcome == "closed":
            raise AggregatorError(ErrorCode.ROUND_CLOSED)
        await self.notifier.round_changed(row.id)
        if outcome == "closed_now":
            self._cancel_timer(row.id)
            self.notifier.forget_round(row.id)
        if status is NodeStatus.INVALID:
            raise AggregatorError(ErrorCode.ANSWER_MISMATCH, f"recorded as invalid: {reason}")

    def _judge(
        self, message_type: str, payload: dict[str, Any], row: Round
    ) -> tuple[NodeStatus, str | None, Any]:
        """Classify a correctly signed message. An answer to another query is rejected without a
        trace (it may be an old answer replayed by someone else); a signed answer to *this*
        query that is malformed is recorded as invalid, since only the node could have made it."""
        query_id = payload.get("query_id")
        if query_id != row.query_id:
            raise AggregatorError(ErrorCode.ANSWER_MISMATCH, "the answer is for another query")
        if message_type == REFUSAL:
            try:
                refusal = Refusal.model_validate(payload)
            except ValidationError:
                return NodeStatus.INVALID, "malformed_refusal", None
            reason = refusal.reason
            return NodeStatus.REFUSED, RefusalReason(reason).value, None
        try:
            answer = QueryAnswer.model_validate(payload)
        except ValidationError:
            return NodeStatus.INVALID, "malformed_answer", None
        spec = QuerySpec.model_validate_json(row.spec)
        if answer.query_hash != row.query_hash:
            return NodeStatus.INVALID, "wrong_query_hash", None
        if not answer.noise and not self.settings.unsafe_accept_exact_answers:
            return NodeStatus.INVALID, "exact_answer", None
        if answer.cells != tuple(spec.cells()) or answer.group_by != spec.group_by:
            return NodeStatus.INVALID, "wrong_cells", None
        if tuple(m.measure for m in answer.measures) != spec.measures or any(
            len(m.values) != spec.cell_count or not math.isfinite(m.noise_sd) or m.noise_sd < 0
            for m in answer.measures
        ):
            return NodeStatus.INVALID, "wrong_measures", None
        return NodeStatus.ANSWERED, None, answer.budget

    # --- closing ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def schedule(self, round_id: str, deadline: datetime) -> None:
        delay = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers[round_id] = loop.call_later(delay, lambda: self._spawn(self.close(round_id)))

    def _cancel_timer(self, round_id: str) -> None:
        timer = self._timers.pop(round_id, None)
        if timer is not None:
            timer.cancel()

    async def close(self, round_id: str) -> None:
        """Close a round at its deadline: unsettled tasks time out."""
        self._timers.pop(round_id, None)
        now = datetime.now(UTC)

        async def close_it(session: AsyncSession) -> bool:
            result = await session.execute(
                update(Round)
                .where(Round.id == round_id, Round.state == RoundState.OPEN.value)
                .values(state=RoundState.CLOSED.value, closed_at=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            for delivered, reason in ((True, None), (False, "not_delivered")):
                condition = (
                    Task.delivered_at.is_not(None) if delivered else Task.delivered_at.is_(None)
                )
                await session.execute(
                    update(Task)
                    .where(
                        Task.round_id == round_id,
                        Task.status == NodeStatus.PENDING.value,
                        condition,
                    )
                    .values(status=NodeStatus.TIMED_OUT.value, reason=reason)
                )
            return True

        try:
            if await self.writer.run(close_it):
                await self.notifier.round_changed(round_id)
                self.notifier.forget_round(round_id)
        except Exception as exc:  # retried at the next start; the round stays open meanwhile
            log.error("could not close round %s: %s", round_id, type(exc).__name__)

    async def resume(self) -> int:
        """After a start: re-arm the deadline of every open round (closing overdue ones)."""
        async with self.factory() as session:
            rows = (
                await session.execute(
                    select(Round.id, Round.deadline).where(Round.state == RoundState.OPEN.value)
                )
            ).all()
        for round_id, deadline in rows:
            self.schedule(round_id, deadline)
        return len(rows)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # --- reading ----------------------------------------------------------------------------

    async def result(self, round_id: str) -> RoundResult:
        cached = self._results.get(round_id)
        if cached is not None:
            return cached
        async with self.factory() as session:
            row = await session.get(Round, round_id)
            if row is None:
                raise AggregatorError(ErrorCode.ROUND_NOT_FOUND)
            tasks = (
                await session.execute(
                    select(Task, Node.institution)
                    .join(Node, Node.id == Task.node_id)
                    .where(Task.round_id == round_id)
                    .order_by(Node.institution, Node.id)
                )
            ).all()
        result = build_result(row, [(t, name) for t, name in tasks])
        if result.state is RoundState.CLOSED:
            self._results.put(round_id, result)
        return result

    async def wait(self, round_id: str, seen: int, timeout: float) -> RoundResult:
        """The round once more than ``seen`` nodes have settled or it closed, or at ``timeout``."""
        version = self.notifier.round_version(round_id)
        result = await self.result(round_id)
        settled = result.coverage.total - result.coverage.pending
        if result.state is RoundState.CLOSED or settled > seen or timeout <= 0:
            return result
        await self.notifier.wait_round(round_id, version, timeout)
        return await self.result(round_id)

    async def recent(self, limit: int = 100) -> list[Round]:
        async with self.factory() as session:
            return list(
                await session.scalars(select(Round).order_by(Round.created_at.desc()).limit(limit))
            )


def build_result(row: Round, tasks: Sequence[tuple[Task, str]]) -> RoundResult:
    spec = QuerySpec.model_validate_json(row.spec)
    outcomes = tuple(
        NodeOutcome(
            node_id=task.node_id,
            institution=institution,
            status=NodeStatus(task.status),
            reason=task.reason,
        )
        for task, institution in tasks
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
    state = RoundState(row.state)
    quorum_met = coverage.answered >= row.quorum
    answers = [
        QueryAnswer.model_validate(json.loads(task.body)["payload"])
        for task, _ in tasks
        if task.status == NodeStatus.ANSWERED.value and task.body is not None
    ]
    measures: tuple[Any, ...] = ()
    ratios: tuple[Any, ...] = ()
    if state is RoundState.CLOSED and quorum_met and answers:
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
        noise=all(a.noise for a in answers),
        coverage=coverage,
        group_by=spec.group_by,
        cells=tuple(spec.cells()),
        measures=measures,
        ratios=ratios,
    )
