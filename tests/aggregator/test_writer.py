"""The group writer (aggregator/services/writer.py) on a real SQLite database: items of a batched
kind share one call per batch, and a failure stays with its own operation or item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from aggregator.services.writer import Batched, Writer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def writer(tmp_path: Path) -> AsyncIterator[tuple[Writer, async_sessionmaker[AsyncSession]]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE item (name TEXT PRIMARY KEY)"))
    factory = async_sessionmaker(engine)
    w = Writer(factory)
    w.start()
    try:
        yield w, factory
    finally:
        await w.stop()
        await engine.dispose()


async def names(factory: async_sessionmaker[AsyncSession]) -> list[str]:
    async with factory() as session:
        return list(await session.scalars(text("SELECT name FROM item ORDER BY name")))


async def test_queued_items_of_a_kind_are_written_by_one_call(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    async def insert(session: AsyncSession, items: Sequence[str]) -> list[str | Exception]:
        calls.append(list(items))
        await session.execute(text("INSERT INTO item VALUES (:n)"), [{"n": n} for n in items])
        return [n.upper() for n in items]

    kind = Batched("items", insert)
    async with writer(tmp_path) as (w, factory):
        results = await asyncio.gather(*(w.add(kind, n) for n in ("a", "b", "c")))
        assert results == ["A", "B", "C"]
        assert calls == [["a", "b", "c"]]
        assert await names(factory) == ["a", "b", "c"]


async def test_a_failing_operation_fails_alone(tmp_path: Path) -> None:
    async def insert(session: AsyncSession, items: Sequence[str]) -> list[str | Exception]:
        await session.execute(text("INSERT INTO item VALUES (:n)"), [{"n": n} for n in items])
        return list(items)

    kind = Batched("items", insert)

    async def duplicate(session: AsyncSession) -> None:
        await session.execute(text("INSERT INTO item VALUES ('x')"))
        await session.execute(text("INSERT INTO item VALUES ('x')"))  # violates the key

    async with writer(tmp_path) as (w, factory):
        outcomes = await asyncio.gather(
            w.add(kind, "a"), w.run(duplicate), w.add(kind, "b"), return_exceptions=True
        )
        assert outcomes[0] == "a" and outcomes[2] == "b"
        assert isinstance(outcomes[1], Exception)
        assert await names(factory) == ["a", "b"]  # nothing of the failed operation stays


async def test_an_item_refused_by_its_kind_gets_its_own_error(tmp_path: Path) -> None:
    async def judge(session: AsyncSession, items: Sequence[int]) -> list[int | Exception]:
        return [ValueError(f"odd {i}") if i % 2 else i for i in items]

    kind = Batched("numbers", judge)
    async with writer(tmp_path) as (w, _):
        outcomes = await asyncio.gather(*(w.add(kind, i) for i in range(4)), return_exceptions=True)
        assert outcomes[0] == 0 and outcomes[2] == 2
        assert [str(o) for o in outcomes[1::2]] == ["odd 1", "odd 3"]
