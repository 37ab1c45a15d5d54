"""Group commit: write operations that arrive while one transaction runs share the next one.

When a thousand nodes answer within the same few milliseconds, committing each answer in its own
transaction would queue them behind SQLite's single writer (or PostgreSQL's fsync). The writer
runs queued operations together, commits once, and only then tells each caller its result. A
caller that is told "done" can rely on its write being durable.

Writes of one kind that many callers make at once (poll reports, delivery marks, answers) are a
``Batched`` kind: the writer hands all queued items of that kind to one call, which writes them
with a few set-based statements instead of a few statements each.

A batch first runs as it is. Should anything in it fail, the transaction is rolled back and the
batch runs again with each operation (and each item of a batched kind) in its own savepoint, so
that one failing operation does not undo the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
Operation = Callable[[AsyncSession], Awaitable[T]]
log = logging.getLogger("publieksdata.aggregator")


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no more work."""


class Batched(Generic[I, T]):
    """A kind of write applied to all its queued items at once: ``apply(session, items)``
    returns one result per item, in order; an exception in that list is raised to that item's
    caller only."""

    def __init__(
        self,
        name: str,
        apply: Callable[[AsyncSession, Sequence[I]], Awaitable[Sequence[T | Exception]]],
    ) -> None:
        self.name = name
        self.apply = apply


Entry = tuple[Operation[Any] | tuple[Batched[Any, Any], Any], asyncio.Future[Any]]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class Writer:
    def __init__(self, factory: async_sessionmaker[AsyncSession], max_batch: int = 500) -> None:
        self.factory = factory
        self.max_batch = max_batch
        self._queue: list[Entry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="aggregator-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def run(self, op: Operation[T]) -> T:
        return cast(T, await self._enqueue(op))

    async def add(self, kind: Batched[I, T], item: I) -> T:
        """Queue ``item`` of a batched kind; its result once the batch is committed."""
        return cast(T, await self._enqueue((kind, item)))

    async def _enqueue(self, work: Any) -> Any:
        if self._closing:
            raise WriterClosed("the aggregator is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[Entry]) -> None:
        try:
            outcomes = await self._attempt(batch, isolated=False)
        except Exception:
            try:  # again, one savepoint each: the failure belongs to its operation only
                outcomes = await self._attempt(batch, isolated=True)
            except Exception as exc:  # the commit itself failed: nothing was written
                log.error("write batch of %d failed: %s", len(batch), type(exc).__name__)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        for future, value, error in outcomes:
            if future.done():  # the caller went away (cancelled); the write stands
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    async def _attempt(self, batch: list[Entry], *, isolated: bool) -> list[Outcome]:
        """Run the batch in one transaction. Not ``isolated``: any failure raises (and the
        transaction rolls back). ``isolated``: each operation in a savepoint, failures kept."""
        units: list[tuple[Any, list[tuple[Any, asyncio.Future[Any]]]]] = []
        kinds: dict[int, list[tuple[Any, asyncio.Future[Any]]]] = {}
        for work, future in batch:
            if isinstance(work, tuple):
                kind, item = work
                if isolated:
                    units.append((kind, [(item, future)]))
                elif id(kind) in kinds:
                    kinds[id(kind)].append((item, future))
                else:
                    kinds[id(kind)] = [(item, future)]
                    units.append((kind, kinds[id(kind)]))
            else:
                units.append((work, [(None, future)]))
        outcomes: list[Outcome] = []
        async with self.factory() as session, session.begin():
            for work, items in units:
                try:
                    if isolated:
                        async with session.begin_nested():
                            values = await self._apply(session, work, items)
                    else:
                        values = await self._apply(session, work, items)
                except Exception as exc:
                    if not isolated:
                        raise
                    outcomes.extend((future, None, exc) for _, future in items)
                    continue
                for (_, future), value in zip(items, values, strict=True):
                    error = value if isinstance(value, Exception) else None
                    outcomes.append((future, None if error else value, error))
        return outcomes

    @staticmethod
    async def _apply(
        session: AsyncSession, work: Any, items: list[tuple[Any, asyncio.Future[Any]]]
    ) -> Sequence[Any]:
        if isinstance(work, Batched):
            values = await work.apply(session, [item for item, _ in items])
            if len(values) != len(items):
                raise RuntimeError(f"{work.name} returned {len(values)} of {len(items)} results")
            return values
        return [await work(session)]
