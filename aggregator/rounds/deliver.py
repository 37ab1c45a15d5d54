"""Delivery: a node's unsettled tasks in open rounds, each signed when it is handed over (so its
signature is always fresh), and the record that it was handed over.

Many nodes poll at once (every node of a round is woken when it is created), so their reads are
shared: a poll joins the next read of the open tasks, which covers every node waiting for it
(one query for all of them), and the delivery marks of a writer batch are one statement. What a
task carries besides its ids is the same for every node of a round (and, in a secure round, of
a phase); it is built once and cached while the round is open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.rounds import seats, secure
from aggregator.rounds.cache import LRU
from aggregator.services.writer import Batched, Writer
from aggregator.storage.models import Round, Task
from protocol.messages import TASK, Phase, QueryRequest
from protocol.query import Mode, QuerySpec
from protocol.results import NodeStatus, RoundState
from protocol.signing import SigningKey, sign

log = logging.getLogger("publieksdata.aggregator")
TASKS = cast(Table, Task.__table__)
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True, slots=True)
class Open:
    """One unsettled task of an open round, with what its envelope needs of the round."""

    task_id: str
    task_phase: str | None
    round_id: str
    deadline: datetime
    mode: str
    phase: str | None
    phase_deadline: datetime | None
    threshold: int | None
    roster: str | None


async def _open_tasks(session: AsyncSession, node_ids: Sequence[str]) -> dict[str, list[Open]]:
    rows = await session.execute(
        select(
            Task.node_id,
            Task.id,
            Task.phase,
            Round.id,
            Round.deadline,
            Round.mode,
            Round.phase,
            Round.phase_deadline,
            Round.threshold,
            Round.roster,
        )
        .join(Round, Round.id == Task.round_id)
        .where(
            Task.node_id.in_(node_ids),
            Task.status == NodeStatus.PENDING.value,
            Task.phase.is_not(None),
            Round.state == RoundState.OPEN.value,
        )
        .order_by(Round.created_at)
    )
    found: dict[str, list[Open]] = {}
    for node_id, *fields in rows:
        found.setdefault(node_id, []).append(Open(*fields))
    return found


class SharedReads:
    """Single flight for the open-task reads: the polls that arrive while one read runs share
    the next one. Each caller's read starts after it asked, so it sees every commit before."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], spawn: Spawn) -> None:
        self.factory = factory
        self.spawn = spawn
        self._waiting: dict[str, list[asyncio.Future[list[Open]]]] = {}
        self._running = False

    async def open_tasks(self, node_id: str) -> list[Open]:
        future: asyncio.Future[list[Open]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(node_id, []).append(future)
        if not self._running:
            self._running = True
            self.spawn(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, {}
                try:
                    async with self.factory() as session:
                        found = await _open_tasks(session, list(waiting))
                except Exception as exc:
                    for futures in waiting.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for node_id, futures in waiting.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(node_id, []))
        finally:
            self._running = False


async def _mark(session: AsyncSession, marks: Sequence[tuple[list[str], datetime]]) -> list[None]:
    rows = [{"b_id": task_id, "b_at": at} for task_ids, at in marks for task_id in task_ids]
    await session.execute(
        update(TASKS)
        .where(TASKS.c.id == bindparam("b_id"), TASKS.c.delivered_at.is_(None))
        .values(delivered_at=bindparam("b_at")),
        rows,
    )
    return [None] * len(marks)


DELIVERED: Batched[tuple[list[str], datetime], None] = Batched("delivery marks", _mark)


class Delivery:
    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        writer: Writer,
        key: SigningKey,
        now: Callable[[], datetime],
        spawn: Spawn,
    ) -> None:
        self.factory = factory
        self.writer = writer
        self.key = key
        self.now = now
        self.spawn = spawn
        self.reads = SharedReads(factory, spawn)
        self._requests: LRU[dict[str, Any]] = LRU(1024)  # QueryRequest JSON by round
        self._phase_data: LRU[Any] = LRU(256)  # by "round:phase"

    async def request_json(self, round_id: str) -> dict[str, Any]:
        cached = self._requests.get(round_id)
        if cached is None:
            async with self.factory() as session:
                spec, analyst = (
                    await session.execute(
                        select(Round.spec, Round.analyst).where(Round.id == round_id)
                    )
                ).one()
            cached = QueryRequest(
                spec=QuerySpec.model_validate(json.loads(spec)), analyst=analyst
            ).model_dump(mode="json")
            self._requests.put(round_id, cached)
        return cached

    async def pending_for(
        self, node_id: str, key_id: str, in_flight: Sequence[str]
    ) -> list[dict[str, Any]]:
        """This node's unsettled tasks in open rounds, signed now; skips tasks it is answering."""
        skip = set(in_flight)
        envelopes = []
        delivered = []
        for task in await self.reads.open_tasks(node_id):
            if task.task_id in skip:
                continue
            payload = {
                "task_id": task.task_id,
                "round_id": task.round_id,
                "node_key_id": key_id,
                "deadline": task.deadline.isoformat(),
                "request": await self.request_json(task.round_id),
            }
            if task.mode == Mode.SECURE.value:
                phase = task.task_phase
                if phase is None or phase != task.phase:
                    continue  # settled for this phase; the next one has not begun
                # One task id per phase, so that a node still finishing one phase (its poll
                # lists that id as in flight) is handed the next phase at once.
                phase_task = f"{task.task_id}.{phase}"
                if phase_task in skip:
                    continue
                payload["task_id"] = phase_task
                if phase == Phase.ANNOUNCE.value and task.phase_deadline is not None:
                    # The deadline this node really has to accept (its operator to approve).
                    payload["deadline"] = task.phase_deadline.isoformat()
                payload.update(await self._secure_data(task, Phase(phase), key_id))
            envelopes.append(sign(TASK, payload, self.key).model_dump(mode="json"))
            delivered.append(task.task_id)
        if delivered:
            self.spawn(self._mark_delivered(delivered))
        return envelopes

    async def _mark_delivered(self, task_ids: list[str]) -> None:
        try:
            await self.writer.add(DELIVERED, (task_ids, self.now()))
        except Exception as exc:  # bookkeeping only; the task itself is safe in the DB
            log.warning("could not record delivery: %s", type(exc).__name__)

    async def _secure_data(self, task: Open, phase: Phase, key_id: str) -> dict[str, Any]:
        """What a secure task carries besides the query, built once per round and phase."""
        data: dict[str, Any] = {"phase": phase.value, "threshold": task.threshold}
        if phase in (Phase.ANNOUNCE, Phase.KEYS):
            return data
        cache_key = f"{task.round_id}:{phase.value}"
        cached = self._phase_data.get(cache_key)
        if cached is None:
            async with self.factory() as session:
                state = await seats.load(session, task.round_id)
            assert state is not None
            members = [s.member() for s in state.seats]
            if phase is Phase.SHARES:
                cached = secure.setup_data(json.loads(task.roster or "[]"), members)
            elif phase is Phase.MASK:
                cached = secure.sealed_by_recipient(members)
            else:
                cached = {"survivors": secure.survivors(members)}
            self._phase_data.put(cache_key, cached)
        if phase is Phase.SHARES:
            data["setup"] = secure.setup_for(cached, key_id, task.threshold or 0)
        elif phase is Phase.MASK:
            data["mask"] = {"sealed": cached.get(key_id, {})}
        else:
            data["unmask"] = cached
        return data

    def prime(self, round_id: str, spec: QuerySpec, analyst: str) -> None:
        """A round this process created: its request is known without a read."""
        request = QueryRequest(spec=spec, analyst=analyst).model_dump(mode="json")
        self._requests.put(round_id, request)

    def forget(self, round_id: str) -> None:
        """A closed round is delivered no more."""
        self._requests.pop(round_id)
