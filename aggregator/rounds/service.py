"""Rounds: one query sent to many nodes, with a deadline and a quorum.

A round is created in one transaction together with one task per node (``create``); the nodes'
long-polls are then woken and hand the tasks over (``deliver``). The node's signed answer or
refusal is stored verbatim (``accept``), as its round's phase machine decides (``independent``,
``securephases``). The round closes when every node has settled or at the deadline, whichever
comes first; the aggregator never polls a node. Everything a round needs survives a restart:
the timers (``timers``) are rebuilt from the database. Deadlines are protocol time: every "now"
and every timer here comes from the injected ``Clock`` (protocol/clock.py), so tests move time
instead of waiting for it. This module wires the parts together and carries out the machines'
actions: replies, wake-ups and timers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.rounds import create as creating
from aggregator.rounds import independent
from aggregator.rounds.accept import Acceptance, Verdict, end_phase
from aggregator.rounds.cache import LRU
from aggregator.rounds.deliver import Delivery
from aggregator.rounds.known import Known, Query
from aggregator.rounds.machine import Action
from aggregator.rounds.result import Settled, build_result, load_result
from aggregator.rounds.timers import Timers, open_rounds
from aggregator.services.notify import Notifier
from aggregator.services.registry import NodeKeys
from aggregator.services.writer import Writer
from aggregator.settings import AggregatorSettings
from aggregator.storage.models import Round, Task
from protocol.clock import Clock, SystemClock
from protocol.query import Mode, QuerySpec
from protocol.results import NodeStatus, RoundResult, RoundState
from protocol.signing import SigningKey

log = logging.getLogger("publieksdata.aggregator")


class Rounds:
    def __init__(
        self,
        settings: AggregatorSettings,
        factory: async_sessionmaker[AsyncSession],
        writer: Writer,
        notifier: Notifier,
        key: SigningKey,
        clock: Clock | None = None,
        node_keys: NodeKeys | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.writer = writer
        self.notifier = notifier
        self.clock = clock or SystemClock()  # deadlines: every "now" below is protocol time
        self._background: set[asyncio.Task[None]] = set()
        self.timers = Timers(self.clock, self._spawn)
        self.delivery = Delivery(factory, writer, key, self.clock.now, self._spawn)
        self.known = Known(factory)
        self.acceptance = Acceptance(settings, factory, writer, self.known, node_keys)
        self._results: LRU[RoundResult] = LRU(64)  # closed rounds, merged

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- creating and delivering --------------------------------------------------------------

    async def start(
        self,
        spec: QuerySpec,
        analyst: str,
        node_ids: list[str] | None,
        deadline_seconds: int | None,
        quorum: int | None,
        threshold: int | None = None,
        approval_deadline_seconds: int | None = None,
    ) -> RoundResult:
        """Create a round; its result as it starts (every node pending), built from what was
        just stored, so that the analyst has it without waiting for a read behind the nodes."""
        created = await creating.create(
            self.settings,
            self.writer,
            self.clock.now(),
            spec,
            analyst,
            node_ids,
            (deadline_seconds, approval_deadline_seconds),
            quorum,
            threshold,
        )
        spec = created.spec
        query = Query(created.round_id, spec.query_id, spec.digest(), spec, spec.mode)
        self.known.remember(query, created.tasks)
        self.delivery.prime(created.round_id, spec, analyst)
        self._arm(created.round_id, created.window.first_timer, spec.mode)
        self.notifier.wake_nodes(list(created.tasks))
        await self.notifier.sent()  # nodes polling another process hear of it before we answer
        names = created.institutions
        tasks = sorted(created.tasks.items(), key=lambda item: (names[item[0]], item[0]))
        return build_result(
            created.row,
            [Settled(t, n, NodeStatus.PENDING.value, None, names[n]) for n, t in tasks],
        )

    async def pending_for(
        self, node_id: str, key_id: str, in_flight: Sequence[str]
    ) -> list[dict[str, Any]]:
        """This node's unsettled tasks in open rounds, signed now; skips tasks it is answering."""
        return await self.delivery.pending_for(node_id, key_id, in_flight)

    # --- receiving ------------------------------------------------------------------------------

    async def accept(self, task_id: str, raw: bytes) -> None:
        """Check a node's signed message for this task and store it; raises AggregatorError for
        anything that is not this node's message for this task (see ``accept``)."""
        await self._carry_out(await self.acceptance.accept(task_id, raw, self.clock.now()))

    async def _carry_out(self, verdict: Verdict) -> None:
        actions = verdict.actions
        if Action.ACCEPT_RETRY in actions:
            return  # a retry of a message already stored: fine
        if Action.REJECT_ANSWERED in actions:
            raise AggregatorError(ErrorCode.ALREADY_ANSWERED)
        if Action.REJECT_CLOSED in actions:
            raise AggregatorError(ErrorCode.ROUND_CLOSED)
        if Action.NOTIFY in actions:
            await self.notifier.round_changed(verdict.round_id)
        if Action.CLOSE in actions:
            self.timers.cancel(verdict.round_id)
            self.notifier.forget_round(verdict.round_id)
            self.delivery.forget(verdict.round_id)
            self.known.forget(verdict.round_id)
        if Action.ADVANCE in actions and verdict.phase_deadline is not None:
            self.timers.arm(verdict.round_id, verdict.phase_deadline, self._phase_timeout)
            self.notifier.wake_nodes(list(verdict.wake))
        if Action.EXTEND in actions and verdict.phase_deadline is not None:
            self.timers.arm(verdict.round_id, verdict.phase_deadline, self._phase_timeout)
        if Action.REJECT_INVALID in actions:
            raise AggregatorError(
                ErrorCode.ANSWER_MISMATCH, f"recorded as invalid: {verdict.reason}"
            )

    # --- deadlines ------------------------------------------------------------------------------

    def _arm(self, round_id: str, at: Any, mode: Mode | str) -> None:
        secure_round = Mode(mode) is Mode.SECURE
        self.timers.arm(round_id, at, self._phase_timeout if secure_round else self.close)

    async def close(self, round_id: str) -> None:
        """Close an independent round at its deadline: unsettled tasks time out."""
        now = self.clock.now()

        async def close_it(session: AsyncSession) -> tuple[Action, ...]:
            state = await session.scalar(
                select(Round.state).where(Round.id == round_id).with_for_update()
            )
            opened = independent.State(open=state == RoundState.OPEN.value, pending=0)
            _, actions = independent.step(opened, independent.Deadline())
            if Action.TIME_OUT in actions:
                for delivered in (True, False):
                    # A delivered task keeps its reason: "awaiting_approval" says why it
                    # timed out.
                    values = {"status": NodeStatus.TIMED_OUT.value}
                    if not delivered:
                        values["reason"] = "not_delivered"
                    await session.execute(
                        update(Task)
                        .where(
                            Task.round_id == round_id,
                            Task.status == NodeStatus.PENDING.value,
                            Task.delivered_at.is_not(None)
                            if delivered
                            else Task.delivered_at.is_(None),
                        )
                        .values(**values)
                    )
            if Action.CLOSE in actions:
                await session.execute(
                    update(Round)
                    .where(Round.id == round_id)
                    .values(state=RoundState.CLOSED.value, closed_at=now)
                )
            return actions

        try:
            actions = await self.writer.run(close_it)
        except Exception as exc:  # retried at the next start; the round stays open meanwhile
            log.error("could not close round %s: %s", round_id, type(exc).__name__)
            return
        await self._carry_out(Verdict(round_id, actions))

    async def _phase_timeout(self, round_id: str) -> None:
        """A secure round's phase deadline passed: move on with whoever answered."""
        now = self.clock.now()

        async def advance(session: AsyncSession) -> Verdict | None:
            return await end_phase(session, round_id, now)

        try:
            verdict = await self.writer.run(advance)
        except Exception as exc:  # retried at the next start; the round stays open meanwhile
            log.error("could not advance round %s: %s", round_id, type(exc).__name__)
            return
        if verdict is not None:
            await self._carry_out(verdict)

    async def resume(self) -> int:
        """After a start: re-arm the deadline of every open round (closing overdue ones)."""
        due = await open_rounds(self.factory)
        for d in due:
            self._arm(d.round_id, d.at, Mode.SECURE if d.secure else Mode.INDEPENDENT)
        return len(due)

    async def sweep(self, grace: timedelta = timedelta(seconds=5)) -> int:
        """Time out what is overdue, whoever created it: with several aggregator processes on
        one database a round's timers live in the process that created it, so every process
        also sweeps now and then (closing and advancing are idempotent and locked), and a
        round outlives the process that asked it. Returns how many rounds it acted on."""
        due = await open_rounds(self.factory)
        overdue = self.timers.overdue(due, grace)
        for d in overdue:
            if d.secure:
                await self._phase_timeout(d.round_id)
            else:
                await self.close(d.round_id)
        return len(overdue)

    def stop(self) -> None:
        self.timers.stop()

    # --- reading --------------------------------------------------------------------------------

    async def result(self, round_id: str) -> RoundResult:
        cached = self._results.get(round_id)
        if cached is not None:
            return cached
        async with self.factory() as session:
            result = await load_result(session, round_id, self.acceptance.parsed.peek(round_id))
        if result is None:
            raise AggregatorError(ErrorCode.ROUND_NOT_FOUND)
        if result.state is RoundState.CLOSED:
            self._results.put(round_id, result)
            self.acceptance.parsed.take(round_id)
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
