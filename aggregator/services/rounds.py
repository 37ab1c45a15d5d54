"""Rounds: one query sent to many nodes, with a deadline and a quorum.

A round is created in one transaction together with one task per node; the nodes' long-polls
are then woken. A task is signed when it is handed to its node, so its signature is always
fresh. The node's signed answer or refusal is stored verbatim. The round closes when every node
has settled or at the deadline, whichever comes first; the aggregator never polls a node.
Everything a round needs survives a restart: the deadline timers are rebuilt from the database.
Deadlines are protocol time: every "now" and every timer here comes from the injected ``Clock``
(protocol/clock.py), so tests move time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.merge import derived, estimates, merge_measures, screen
from aggregator.services import registry, secure
from aggregator.services.notify import Notifier
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.models import Node, Round, Task
from protocol import secagg
from protocol.calibration import ExpectedNoise, expected_noise
from protocol.clock import Clock, SystemClock, Timer
from protocol.messages import (
    ANSWER,
    REFUSAL,
    SECAGG_TYPES,
    TASK,
    Phase,
    QueryAnswer,
    QueryRequest,
    Refusal,
    RefusalReason,
    SecAggMasked,
)
from protocol.noise_shares import query_worst_case_rho
from protocol.query import Measure, Mechanism, Mode, QuerySpec
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


def _member(task: Task, key_id: str, public_key: str) -> secure.Member:
    return secure.Member(
        task_id=task.id,
        key_id=key_id,
        public_key=public_key,
        status=task.status,
        keys=task.keys,
        shares=task.shares,
        masked=task.body if task.status != NodeStatus.REFUSED.value else None,
        reveal=task.reveal,
    )


@dataclass(frozen=True, slots=True)
class WouldRefuse:
    node_id: str
    institution: str
    reason: str


def precheck(
    spec: QuerySpec, node: Node, pending: dict[str, float], threshold: int | None = None
) -> str | None:
    """The reason a node would refuse ``spec``, judged from its last signed report, or None."""
    report = registry.stored_report(node)
    if report is None:
        return None  # never reported (or unreadable): send, and let the node decide
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
    if threshold is not None and policy.secure_max_worst_rho is not None:
        if policy.secure_max_worst_rho <= 0:
            return RefusalReason.POLICY_MODE.value
        if query_worst_case_rho(spec, threshold) > policy.secure_max_worst_rho * (1 + 1e-9):
            return RefusalReason.POLICY_SECURE_WORST_CASE.value
    remaining = registry.remaining_estimate(node, pending)
    if remaining is not None and cost > remaining * (1 + 1e-9) + 1e-12:
        return RefusalReason.BUDGET_EXHAUSTED.value
    return None


def check_mode(spec: QuerySpec, threshold: int | None) -> None:
    """Refuse a mode the spec cannot have: secure needs ρ (zCDP); a threshold needs secure."""
    if spec.mode is Mode.SECURE and spec.privacy.mechanism is not Mechanism.GAUSSIAN:
        raise AggregatorError(
            ErrorCode.INVALID_QUERY, "secure mode needs a rho (zCDP) budget, not epsilon"
        )
    if threshold is not None and spec.mode is not Mode.SECURE:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, "a threshold is for secure rounds; use quorum"
        )


async def select_nodes(
    session: AsyncSession, settings: AggregatorSettings, node_ids: list[str] | None
) -> list[Node]:
    """The active nodes a round asks (all, or those named), or why there cannot be a round."""
    nodes = await registry.active_nodes(session, node_ids)
    if node_ids is not None:
        missing = sorted(set(node_ids) - {n.id for n in nodes})
        if missing:
            raise AggregatorError(ErrorCode.UNKNOWN_NODE, f"not enrolled: {', '.join(missing)}")
    if not nodes:
        raise AggregatorError(ErrorCode.NO_NODES)
    if len(nodes) > settings.max_nodes_per_round:
        raise AggregatorError(ErrorCode.INVALID_REQUEST, "too many nodes for one round")
    return nodes


def plan(
    settings: AggregatorSettings,
    spec: QuerySpec,
    count: int,
    quorum: int | None,
    threshold: int | None,
) -> tuple[int | None, int]:
    """A round of ``spec`` over ``count`` nodes: its secure threshold t (None in independent
    mode) and its quorum, or why the request cannot be a round."""
    secure_mode = spec.mode is Mode.SECURE
    least = settings.min_quorum
    if count < least:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            f"a round needs at least {least} institutions, so that no result shows one "
            "institution's figure",
        )
    t: int | None = None
    if secure_mode and count < 2:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST,
            "secure mode needs at least 2 nodes; ask more nodes or use mode 'independent'",
        )
    if secure_mode:
        t = threshold or quorum or secure.default_threshold(count, least)
        low = max(least, secagg.minimum_threshold(count), 2)
        if not low <= t <= count:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                f"the threshold must be between {low} and {count} for {count} nodes",
            )
        if quorum is not None and quorum != t:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                "a secure round's quorum is its threshold; give one of the two",
            )
        need = t
    else:
        need = quorum if quorum is not None else max(least, math.ceil(count / 2))
    if not least <= need <= count:
        raise AggregatorError(
            ErrorCode.INVALID_REQUEST, f"quorum must be between {least} and {count}"
        )
    return t, need


class Rounds:
    def __init__(
        self,
        settings: AggregatorSettings,
        factory: async_sessionmaker[AsyncSession],
        writer: Writer,
        notifier: Notifier,
        key: SigningKey,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.writer = writer
        self.notifier = notifier
        self.key = key
        self.clock = clock or SystemClock()  # deadlines: every "now" below is protocol time
        self._timers: dict[str, Timer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Caches, bounded: the QueryRequest JSON of open rounds, and merged closed rounds.
        self._requests: LRU[dict[str, Any]] = LRU(1024)
        self._results: LRU[RoundResult] = LRU(64)
        self._phase_cache: LRU[Any] = LRU(256)

    # --- creating ---------------------------------------------------------------------------

    async def create(
        self,
        spec: QuerySpec,
        analyst: str,
        node_ids: list[str] | None,
        deadline_seconds: int | None,
        quorum: int | None,
        threshold: int | None = None,
        approval_deadline_seconds: int | None = None,
    ) -> str:
        check_mode(spec, threshold)
        secure_mode = spec.mode is Mode.SECURE
        seconds = deadline_seconds or self.settings.default_deadline_seconds
        if not 1 <= seconds <= self.settings.max_deadline_seconds:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                f"deadline_seconds must be between 1 and {self.settings.max_deadline_seconds}",
            )
        if approval_deadline_seconds is not None and not secure_mode:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                "approval_deadline_seconds is for secure rounds; an independent round's "
                "deadline_seconds is its nodes' approval window",
            )
        approval = approval_deadline_seconds or seconds
        if not 1 <= approval <= self.settings.max_deadline_seconds:
            raise AggregatorError(
                ErrorCode.INVALID_REQUEST,
                "approval_deadline_seconds must be between 1 and "
                f"{self.settings.max_deadline_seconds}",
            )
        round_id = str(uuid.uuid4())
        spec = spec.model_copy(update={"query_id": f"pd-{round_id}"})
        now = self.clock.now()
        deadline = now + timedelta(seconds=seconds)
        phase_end = None
        if secure_mode:
            # ANNOUNCE waits for the operators' approval on its own deadline; the protocol
            # phases get the round's deadline_seconds after it (or more, when all accept early).
            phase_end = secure.announce_deadline(now, approval)
            deadline = phase_end + timedelta(seconds=seconds)

        async def insert(session: AsyncSession) -> list[str]:
            nodes = await select_nodes(session, self.settings, node_ids)
            t, need = plan(self.settings, spec, len(nodes), quorum, threshold)
            pending = await registry.committed_since_report(session)
            refusing = [
                WouldRefuse(n.id, n.institution, reason)
                for n in nodes
                if (reason := precheck(spec, n, pending, t)) is not None
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
                    deadline=deadline,
                    quorum=need,
                    state=RoundState.OPEN.value,
                    mode=spec.mode.value,
                    threshold=t,
                    phase=Phase.ANNOUNCE.value if secure_mode else None,
                    phase_deadline=phase_end,
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
                    phase=Phase.ANNOUNCE.value if secure_mode else Phase.QUERY.value,
                )
                for n in nodes
            )
            return [n.id for n in nodes]

        targets = await self.writer.run(insert)
        self.schedule(round_id, phase_end or deadline, secure_round=secure_mode)
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
                    select(Task.id, Task.phase, Round)
                    .join(Round, Round.id == Task.round_id)
                    .where(
                        Task.node_id == node_id,
                        Task.status == NodeStatus.PENDING.value,
                        Task.phase.is_not(None),
                        Round.state == RoundState.OPEN.value,
                    )
                    .order_by(Round.created_at)
                )
            ).all()
        skip = set(in_flight)
        envelopes = []
        delivered = []
        for task_id, phase, row in rows:
            if task_id in skip:
                continue
            payload = {
                "task_id": task_id,
                "round_id": row.id,
                "node_key_id": key_id,
                "deadline": row.deadline.isoformat(),
                "request": self._request_json(row),
            }
            if row.mode == Mode.SECURE.value:
                if phase is None or phase != row.phase:
                    continue  # settled for this phase; the next one has not begun
                # One task id per phase, so that a node still finishing one phase (its poll
                # lists that id as in flight) is handed the next phase at once.
                phase_task = f"{task_id}.{phase}"
                if phase_task in skip:
                    continue
                payload["task_id"] = phase_task
                if phase == Phase.ANNOUNCE.value and row.phase_deadline is not None:
                    # The deadline this node really has to accept (its operator to approve).
                    payload["deadline"] = row.phase_deadline.isoformat()
                payload.update(await self._phase_data(row, Phase(phase), key_id))
            envelopes.append(sign(TASK, payload, self.key).model_dump(mode="json"))
            delivered.append(task_id)
        if delivered:
            self._mark_delivered(delivered)
        return envelopes

    def _mark_delivered(self, task_ids: list[str]) -> None:
        now = self.clock.now()

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

    async def _members(self, round_id: str) -> list[secure.Member]:
        async with self.factory() as session:
            rows = (
                await session.execute(
                    select(Task, Node.key_id, Node.public_key)
                    .join(Node, Node.id == Task.node_id)
                    .where(Task.round_id == round_id)
                )
            ).all()
        return [_member(task, key_id, public) for task, key_id, public in rows]

    async def _phase_data(self, row: Round, phase: Phase, key_id: str) -> dict[str, Any]:
        """What a secure task carries besides the query, built once per round and phase."""
        data: dict[str, Any] = {"phase": phase.value, "threshold": row.threshold}
        if phase in (Phase.ANNOUNCE, Phase.KEYS):
            return data
        cache_key = f"{row.id}:{phase.value}"
        cached = self._phase_cache.get(cache_key)
        if cached is None:
            members = await self._members(row.id)
            if phase is Phase.SHARES:
                cached = secure.setup_data(json.loads(row.roster or "[]"), members)
            elif phase is Phase.MASK:
                cached = secure.sealed_by_recipient(members)
            else:
                cached = {"survivors": secure.survivors(members)}
            self._phase_cache.put(cache_key, cached)
        if phase is Phase.SHARES:
            data["setup"] = secure.setup_for(cached, key_id, row.threshold or 0)
        elif phase is Phase.MASK:
            data["mask"] = {"sealed": cached.get(key_id, {})}
        else:
            data["unmask"] = cached
        return data

    # --- receiving --------------------------------------------------------------------------

    async def _accept_secure(
        self,
        task_id: str,
        row: Round,
        node: Node,
        message_type: str,
        payload: dict[str, Any],
        raw: bytes,
    ) -> None:
        spec = QuerySpec.model_validate_json(row.spec)
        phase = Phase(row.phase) if row.phase else None
        status: NodeStatus | None = None
        reason: str | None = None
        if phase is not None:
            try:
                status, reason = secure.judge(
                    phase,
                    message_type,
                    payload,
                    round_id=row.id,
                    spec=spec,
                    threshold=row.threshold or 0,
                    key_id=node.key_id,
                    roster=json.loads(row.roster or "[]"),
                    accept_exact=self.settings.unsafe_accept_exact_answers,
                )
            except secure.Foreign:
                raise AggregatorError(
                    ErrorCode.ANSWER_MISMATCH, "the message is for another round or query"
                ) from None
            except secure.Invalid as exc:
                status, reason = NodeStatus.INVALID, exc.reason
            if phase is Phase.UNMASK and status is not NodeStatus.PENDING:
                # Its masked vector is in the sum already: a refusal or a bad reveal only means
                # that its shares are missing, which the others' shares make up for.
                status, reason = None, None
        now = self.clock.now()

        async def store(session: AsyncSession) -> tuple[str, Phase | None]:
            current = await session.get(Task, task_id)
            round_row = await session.get(Round, row.id, with_for_update=True)
            assert current is not None and round_row is not None
            for column in ("keys", "shares", "body", "reveal"):
                if getattr(current, column) == raw:
                    return "same", None  # a retry of a message already stored
            if (
                phase is Phase.ANNOUNCE
                and status is NodeStatus.PENDING
                and current.phase is None
                and round_row.phase == phase.value
                and current.status == NodeStatus.PENDING.value
            ):
                return "same", None  # accepted already (an acceptance is not stored)
            if (
                round_row.state != RoundState.OPEN.value
                or current.status != NodeStatus.PENDING.value
                or phase is None
                or round_row.phase != phase.value
            ):
                return "closed", None
            if current.phase is None:
                return "answered", None
            current.received_at = now
            current.phase = None
            if status is None:
                pass  # UNMASK without usable shares: nothing to store
            elif status is NodeStatus.PENDING:
                current.reason = None  # e.g. no longer awaiting its operator's approval
                columns = {"keys": "keys", "shares": "shares", "mask": "body", "unmask": "reveal"}
                if phase is not Phase.ANNOUNCE:  # an acceptance: staying in is the record
                    setattr(current, columns[phase.value], raw)
                if phase is Phase.MASK:
                    budget = SecAggMasked.model_validate(payload).budget
                    # Wall time, as the poll reports it is ordered against use.
                    await registry.record_budget(session, node.id, budget, datetime.now(UTC))
                    await registry.record_proof(session, node.id, raw.decode("utf-8"), budget)
            else:
                assert status is not None
                current.status = status.value
                current.reason = reason
                if status is NodeStatus.REFUSED:
                    current.body = raw
            await session.flush()
            waiting = await session.scalar(
                select(func.count())
                .select_from(Task)
                .where(
                    Task.round_id == row.id,
                    Task.status == NodeStatus.PENDING.value,
                    Task.phase.is_not(None),
                )
            )
            if waiting:
                return "stored", None
            return "advanced", await self._advance(session, round_row, now)

        outcome, moved_to = await self.writer.run(store)
        if outcome == "same":
            return
        if outcome == "answered":
            raise AggregatorError(ErrorCode.ALREADY_ANSWERED)
        if outcome == "closed":
            raise AggregatorError(ErrorCode.ROUND_CLOSED)
        if outcome == "advanced":
            await self._after_advance(row.id, moved_to)
        else:
            await self.notifier.round_changed(row.id)
        if status is NodeStatus.INVALID:
            raise AggregatorError(ErrorCode.ANSWER_MISMATCH, f"recorded as invalid: {reason}")

    async def _advance(
        self, session: AsyncSession, round_row: Round, now: datetime
    ) -> Phase | None:
        """End the current phase of a secure round (inside the caller's transaction). Returns the
        phase that begins, or None when the round closed (with a sum, or failed)."""
        assert round_row.phase is not None and round_row.threshold is not None
        phase = Phase(round_row.phase)
        t = round_row.threshold
        rows = (
            await session.execute(
                select(Task, Node.key_id, Node.public_key)
                .join(Node, Node.id == Task.node_id)
                .where(Task.round_id == round_row.id)
            )
        ).all()
        tasks = {key_id: task for task, key_id, _ in rows}
        for task in tasks.values():
            if task.status == NodeStatus.PENDING.value and task.phase is not None:
                task.phase = None
                if phase is not Phase.UNMASK:  # in UNMASK its vector is already in the sum
                    task.status = NodeStatus.TIMED_OUT.value
                    if task.delivered_at is None:
                        task.reason = "not_delivered"
                    elif phase is Phase.ANNOUNCE:
                        # Its node said it waits for its operator: keep "awaiting_approval".
                        if task.reason != registry.AWAITING_APPROVAL:
                            task.reason = secure.DROPPED_BEFORE_MASKING
                    elif phase is Phase.MASK:
                        task.reason = secure.DROPPED_AFTER_SHARING
                    else:
                        task.reason = secure.DROPPED_BEFORE_MASKING
        members = [_member(task, key_id, public) for task, key_id, public in rows]
        active = [m for m in members if m.active]
        if phase is Phase.ANNOUNCE:
            moving = active  # every node that accepted (the others timed out just now)
        elif phase is Phase.KEYS:
            moving = [m for m in active if m.keys is not None]
            round_row.roster = json.dumps(secure.ring_of(round_row.id, moving))
        elif phase is Phase.SHARES:
            moving = [m for m in active if m.shares is not None]
        elif phase is Phase.MASK:
            accused: set[str] = set()
            for m in active:
                if m.masked is not None:
                    accused.update(
                        SecAggMasked.model_validate(secure.payload_of(m.masked)).bad_shares
                    )
            for key_id in accused & {m.key_id for m in active}:
                tasks[key_id].status = NodeStatus.INVALID.value
                tasks[key_id].reason = secure.MALFORMED_SHARES
            moving = [m for m in active if m.masked is not None and m.key_id not in accused]
        else:
            spec = QuerySpec.model_validate_json(round_row.spec)
            try:
                result = secure.reconstruct(
                    round_row.id, spec, t, json.loads(round_row.roster or "[]"), members
                )
            except secure.ReconstructionFailed as exc:
                self._fail(round_row, tasks.values(), str(exc), now)
                return None
            except (secagg.SecAggError, ValidationError):
                self._fail(round_row, tasks.values(), "reconstruction_failed", now)
                return None
            for m in active:
                if m.masked is not None:
                    tasks[m.key_id].status = NodeStatus.ANSWERED.value
            round_row.outcome = result.to_json()
            round_row.state = RoundState.CLOSED.value
            round_row.closed_at = now
            round_row.phase = None
            return None
        if len(moving) < t:
            self._fail(round_row, tasks.values(), f"below_threshold_{phase.value}", now)
            return None
        following = secure.next_phase(phase)
        assert following is not None
        round_row.phase = following.value
        round_row.phase_deadline = secure.phase_deadline(now, round_row.deadline, following)
        for m in moving:
            tasks[m.key_id].phase = following.value
        return following

    @staticmethod
    def _fail(round_row: Round, tasks: Any, failure: str, now: datetime) -> None:
        """Close a secure round without a sum. Nodes still in it did their part (answered)."""
        for task in tasks:
            if task.status == NodeStatus.PENDING.value:
                task.status = NodeStatus.ANSWERED.value
                task.reason = "round_failed"
            task.phase = None
        round_row.failure = failure[:64]
        round_row.state = RoundState.CLOSED.value
        round_row.closed_at = now
        round_row.phase = None
        log.warning("secure round %s failed: %s", round_row.id, failure)

    async def _after_advance(self, round_id: str, moved_to: Phase | None) -> None:
        await self.notifier.round_changed(round_id)
        if moved_to is None:
            self._cancel_timer(round_id)
            self.notifier.forget_round(round_id)
            return
        async with self.factory() as session:
            row = await session.get(Round, round_id)
            targets = list(
                await session.scalars(
                    select(Task.node_id).where(
                        Task.round_id == round_id, Task.phase == moved_to.value
                    )
                )
            )
        if row is not None and row.phase_deadline is not None:
            self._cancel_timer(round_id)
            self.schedule(round_id, row.phase_deadline, secure_round=True)
        self.notifier.wake_nodes(targets)

    async def _phase_timeout(self, round_id: str) -> None:
        """A secure round's phase deadline passed: move on with whoever answered."""
        self._timers.pop(round_id, None)
        now = self.clock.now()

        async def advance(session: AsyncSession) -> tuple[bool, Phase | None]:
            # Locked: another aggregator process on the same database may be timing it out too.
            row = await session.get(Round, round_id, with_for_update=True)
            if row is None or row.state != RoundState.OPEN.value or row.phase is None:
                return False, None
            if row.phase_deadline is not None and row.phase_deadline > now:
                return False, None  # moved on early; a timer for the new phase exists
            return True, await self._advance(session, row, now)

        try:
            changed, moved_to = await self.writer.run(advance)
        except Exception as exc:  # retried at the next start; the round stays open meanwhile
            log.error("could not advance round %s: %s", round_id, type(exc).__name__)
            return
        if changed:
            await self._after_advance(round_id, moved_to)

    async def accept(self, task_id: str, raw: bytes) -> None:
        """Check a node's signed answer or refusal for this task and store it. Raises
        AggregatorError for anything that is not this node's answer to this task's query.
        A secure round's task id carries its phase ("<task>.<phase>"); the message type and
        the round's current phase decide what the message is."""
        task_id = task_id.split(".", 1)[0]
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
        signer = _signing_key(node, envelope.key_id)
        if signer is None:
            raise AggregatorError(ErrorCode.WRONG_NODE)
        allowed = (REFUSAL, *SECAGG_TYPES) if row.mode == Mode.SECURE.value else (ANSWER, REFUSAL)
        if envelope.type not in allowed:
            raise AggregatorError(ErrorCode.WRONG_MESSAGE_TYPE)
        try:
            payload = verify_once(envelope, envelope.type, public_key_from_text(signer))
        except SignatureError:
            raise AggregatorError(ErrorCode.BAD_SIGNATURE) from None
        if row.mode == Mode.SECURE.value:
            await self._accept_secure(task_id, row, node, envelope.type, payload, raw)
            return
        status, reason, budget = self._judge(envelope.type, payload, row)
        now = self.clock.now()

        async def store(session: AsyncSession) -> str:
            current = await session.get(Task, task_id)
            round_row = await session.get(Round, row.id, with_for_update=True)
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
            current.phase = None
            if budget is not None:
                # Wall time, as the poll reports it is ordered against use.
                await registry.record_budget(session, node.id, budget, datetime.now(UTC))
                await registry.record_proof(session, node.id, raw.decode("utf-8"), budget)
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
        flaw = screen(spec, answer, accept_exact=self.settings.unsafe_accept_exact_answers)
        if flaw is not None:
            return NodeStatus.INVALID, flaw, None
        return NodeStatus.ANSWERED, None, answer.budget

    # --- closing ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def schedule(self, round_id: str, deadline: datetime, *, secure_round: bool = False) -> None:
        action = self._phase_timeout if secure_round else self.close
        self._timers[round_id] = self.clock.call_at(deadline, lambda: self._spawn(action(round_id)))

    def _cancel_timer(self, round_id: str) -> None:
        timer = self._timers.pop(round_id, None)
        if timer is not None:
            timer.cancel()

    async def close(self, round_id: str) -> None:
        """Close a round at its deadline: unsettled tasks time out."""
        self._timers.pop(round_id, None)
        now = self.clock.now()

        async def close_it(session: AsyncSession) -> bool:
            result = await session.execute(
                update(Round)
                .where(Round.id == round_id, Round.state == RoundState.OPEN.value)
                .values(state=RoundState.CLOSED.value, closed_at=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            for delivered in (True, False):
                condition = (
                    Task.delivered_at.is_not(None) if delivered else Task.delivered_at.is_(None)
                )
                # A delivered task keeps its reason: "awaiting_approval" says why it timed out.
                values = {"status": NodeStatus.TIMED_OUT.value}
                if not delivered:
                    values["reason"] = "not_delivered"
                await session.execute(
                    update(Task)
                    .where(
                        Task.round_id == round_id,
                        Task.status == NodeStatus.PENDING.value,
                        condition,
                    )
                    .values(**values)
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
                    select(Round.id, Round.deadline, Round.phase_deadline, Round.mode).where(
                        Round.state == RoundState.OPEN.value
                    )
                )
            ).all()
        for round_id, deadline, phase_deadline, mode in rows:
            if mode == Mode.SECURE.value:
                self.schedule(round_id, phase_deadline or deadline, secure_round=True)
            else:
                self.schedule(round_id, deadline)
        return len(rows)

    async def sweep(self, grace: timedelta = timedelta(seconds=5)) -> int:
        """Time out what is overdue, whoever created it: with several aggregator processes on
        one database a round's timers live in the process that created it, so every process
        also sweeps now and then (closing and advancing are idempotent and locked), and a
        round outlives the process that asked it. Returns how many rounds it acted on."""
        now = self.clock.now()
        async with self.factory() as session:
            rows = (
                await session.execute(
                    select(Round.id, Round.deadline, Round.phase_deadline, Round.mode).where(
                        Round.state == RoundState.OPEN.value
                    )
                )
            ).all()
        acted = 0
        for round_id, deadline, phase_deadline, mode in rows:
            if mode == Mode.SECURE.value and phase_deadline is not None:
                if phase_deadline + grace <= now:
                    await self._phase_timeout(round_id)
                    acted += 1
            elif deadline + grace <= now:
                await self.close(round_id)
                acted += 1
        return acted

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
            loaded = await load_result(session, round_id)
        if loaded is None:
            raise AggregatorError(ErrorCode.ROUND_NOT_FOUND)
        result = loaded
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


async def load_result(session: AsyncSession, round_id: str) -> RoundResult | None:
    """A round's result as analysts see it, or None for an unknown round."""
    row = await session.get(Round, round_id)
    if row is None:
        return None
    tasks = (
        await session.execute(
            select(Task, Node.institution)
            .join(Node, Node.id == Task.node_id)
            .where(Task.round_id == round_id)
            .order_by(Node.institution, Node.id)
        )
    ).all()
    return build_result(row, [(t, name) for t, name in tasks])


def _signing_key(node: Node, key_id: str) -> str | None:
    """The node's public key with this id: its current key, or during a rotation's overlap
    window its previous one."""
    if key_id == node.key_id:
        return node.public_key
    if (
        key_id == node.retired_key_id
        and node.retired_until is not None
        and node.retired_until > datetime.now(UTC)
    ):
        return node.retired_public_key
    return None


def _stored_answer(
    spec: QuerySpec, body: bytes, expected: Mapping[Measure, ExpectedNoise]
) -> QueryAnswer | str:
    """A stored answer, or why it cannot be merged. Answers are checked when they arrive; this
    check again at every read keeps one bad row (stored by an older version, or edited in the
    database) from breaking the round for the analyst: it shows as an invalid node instead."""
    try:
        answer = QueryAnswer.model_validate(json.loads(body)["payload"])
    except (ValueError, TypeError, KeyError, ValidationError):
        return "malformed_answer"
    return screen(spec, answer, accept_exact=True, expected=expected) or answer


def build_result(row: Round, tasks: Sequence[tuple[Task, str]]) -> RoundResult:
    spec = QuerySpec.model_validate_json(row.spec)
    answers: list[QueryAnswer] = []
    rejected: dict[str, str] = {}
    if row.mode != Mode.SECURE.value:
        expected = expected_noise(spec)  # once for all the round's answers
        for task, _ in tasks:
            if task.status == NodeStatus.ANSWERED.value and task.body is not None:
                stored = _stored_answer(spec, task.body, expected)
                if isinstance(stored, str):
                    rejected[task.id] = stored
                else:
                    answers.append(stored)
    outcomes = tuple(
        NodeOutcome(
            node_id=task.node_id,
            institution=institution,
            status=NodeStatus.INVALID if task.id in rejected else NodeStatus(task.status),
            reason=rejected.get(task.id, task.reason),
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
    measures: tuple[Any, ...] = ()
    ratios: tuple[Any, ...] = ()
    noise = all(a.noise for a in answers)
    if row.mode == Mode.SECURE.value:
        answers = []
        quorum_met = row.outcome is not None
        if row.outcome is not None:
            summed = secure.Outcome.from_json(row.outcome)
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
