"""Delivery's shared reads (aggregator/rounds/deliver.py), on a real SQLite database: polls that
ask together are answered by one query, each with its own node's open tasks, and a poll that
asks after a commit sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from aggregator.rounds.deliver import SharedReads
from aggregator.storage.db import make_async_sessionmaker
from aggregator.storage.models import Base, Node, Round, Task

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_polls_that_ask_together_share_one_query(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    selects: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            selects.append(statement) if statement.lstrip().upper().startswith("SELECT") else None
        ),
    )
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        nodes = [f"n{i}" for i in range(3)]
        await conn.execute(
            insert(Node),
            [
                {"id": n, "institution": n, "key_id": f"k{n}", "public_key": "-", "joined_at": NOW}
                for n in nodes
            ],
        )
        await conn.execute(
            insert(Round).values(
                id="r1",
                query_id="pd-r1",
                query_hash="h",
                spec="{}",
                analyst="a",
                created_at=NOW,
                deadline=NOW + timedelta(minutes=5),
                quorum=1,
                state="open",
                mode="independent",
            )
        )
        await conn.execute(
            insert(Task),
            [
                {
                    "id": f"t{n}",
                    "round_id": "r1",
                    "node_id": n,
                    "status": "pending",
                    "cost_rho": 0.1,
                    "created_at": NOW,
                    "phase": "query",
                }
                for n in nodes[:2]  # n2 has no task
            ],
        )
    background: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    reads = SharedReads(make_async_sessionmaker(engine), spawn)
    selects.clear()
    found = await asyncio.gather(*(reads.open_tasks(n) for n in nodes))
    assert [[t.task_id for t in tasks] for tasks in found] == [["tn0"], ["tn1"], []]
    assert len(selects) == 1
    async with engine.begin() as conn:  # n0 answers: its task is no longer open
        await conn.execute(update(Task).where(Task.id == "tn0").values(status="answered"))
    assert await reads.open_tasks("n0") == []
    await engine.dispose()
