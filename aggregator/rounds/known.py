"""What this process knows of rounds that never changes: a round's query (id, hash, spec,
mode) and whose each task is. Remembered when this process creates a round, read from the
database on a miss (a round created before a restart or by another process), forgotten when
the round closes. Everything that changes (states, answers) is read from the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aggregator.rounds.cache import LRU
from aggregator.storage.models import Round, Task
from protocol.query import Mode, QuerySpec


@dataclass(frozen=True, slots=True)
class Query:
    round_id: str
    query_id: str
    query_hash: str
    spec: QuerySpec
    mode: Mode


@dataclass(frozen=True, slots=True)
class Owner:
    round_id: str
    node_id: str


class Known:
    def __init__(self, factory: async_sessionmaker[AsyncSession], size: int = 100_000) -> None:
        self.factory = factory
        self._queries: LRU[Query] = LRU(1024)
        self._owners: LRU[Owner] = LRU(size)
        self._tasks_of: LRU[list[str]] = LRU(1024)  # a round closed elsewhere ages out

    def remember(self, query: Query, tasks: dict[str, str]) -> None:
        """A round this process created; ``tasks`` maps node ids to task ids."""
        self._queries.put(query.round_id, query)
        for node_id, task_id in tasks.items():
            self._owners.put(task_id, Owner(query.round_id, node_id))
        self._tasks_of.put(query.round_id, list(tasks.values()))

    def forget(self, round_id: str) -> None:
        self._queries.pop(round_id)
        for task_id in self._tasks_of.pop(round_id) or ():
            self._owners.pop(task_id)

    async def task(self, task_id: str) -> tuple[Owner, Query] | None:
        owner = self._owners.get(task_id)
        if owner is not None:
            query = self._queries.get(owner.round_id)
            if query is not None:
                return owner, query
        async with self.factory() as session:
            found = (
                await session.execute(
                    select(
                        Task.round_id,
                        Task.node_id,
                        Round.query_id,
                        Round.query_hash,
                        Round.spec,
                        Round.mode,
                    )
                    .join(Round, Round.id == Task.round_id)
                    .where(Task.id == task_id)
                )
            ).first()
        if found is None:
            return None
        round_id, node_id, query_id, query_hash, spec, mode = found
        query = self._queries.get(round_id)
        if query is None:
            query = Query(
                round_id, query_id, query_hash, QuerySpec.model_validate_json(spec), Mode(mode)
            )
            self._queries.put(round_id, query)
        owner = Owner(round_id, node_id)
        self._owners.put(task_id, owner)
        return owner, query
