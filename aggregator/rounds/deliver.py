"""Delivery: a node's unsettled tasks in open rounds, each signed when it is handed over (so its
signature is always fresh), and the record that it was handed over.

What a task carries besides its ids is the same for every node of a round (and, in a secure
round, of a phase); it is built once and cached while the round is open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.rounds import seats, secure
from aggregator.rounds.cache import LRU
from aggregator.services.writer import Writer
from aggregator.storage.models import Round, Task
from protocol.messages import TASK, Phase, QueryRequest
from protocol.query import Mode, QuerySpec
from protocol.results import NodeStatus, RoundState
from protocol.signing import SigningKey, sign

log = logging.getLogger("publieksdata.aggregator")
Spawn = Callable[[Coroutine[Any, Any, None]], None]


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
        self._requests: LRU[dict[str, Any]] = LRU(1024)  # QueryRequest JSON by round
        self._phase_data: LRU[Any] = LRU(256)  # by "round:phase"

    def request_json(self, row: Round) -> dict[str, Any]:
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
                "request": self.request_json(row),
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
                payload.update(await self._secure_data(row, Phase(phase), key_id))
            envelopes.append(sign(TASK, payload, self.key).model_dump(mode="json"))
            delivered.append(task_id)
        if delivered:
            self._mark_delivered(delivered)
        return envelopes

    def _mark_delivered(self, task_ids: list[str]) -> None:
        now = self.now()

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

        self.spawn(run())

    async def _secure_data(self, row: Round, phase: Phase, key_id: str) -> dict[str, Any]:
        """What a secure task carries besides the query, built once per round and phase."""
        data: dict[str, Any] = {"phase": phase.value, "threshold": row.threshold}
        if phase in (Phase.ANNOUNCE, Phase.KEYS):
            return data
        cache_key = f"{row.id}:{phase.value}"
        cached = self._phase_data.get(cache_key)
        if cached is None:
            async with self.factory() as session:
                state = await seats.load(session, row.id)
            assert state is not None
            members = [s.member() for s in state.seats]
            if phase is Phase.SHARES:
                cached = secure.setup_data(json.loads(row.roster or "[]"), members)
            elif phase is Phase.MASK:
                cached = secure.sealed_by_recipient(members)
            else:
                cached = {"survivors": secure.survivors(members)}
            self._phase_data.put(cache_key, cached)
        if phase is Phase.SHARES:
            data["setup"] = cached
        elif phase is Phase.MASK:
            data["mask"] = {"sealed": cached.get(key_id, {})}
        else:
            data["unmask"] = cached
        return data

    def forget(self, round_id: str) -> None:
        """A closed round is delivered no more."""
        self._requests.pop(round_id)
