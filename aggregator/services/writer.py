"""Group commit: write operations that arrive while one transaction runs share the next one.

When a thousand nodes answer within the same few milliseconds, committing each answer in its own
transaction would queue them behind SQLite's single writer (or PostgreSQL's fsync). The writer
runs queued operations together, each in its own savepoint so that one failing operation does
not undo the others, commits once, and only then tells each caller its result. A caller that is
told "done" can rely on its write being durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
Operation = Callable[[AsyncSession], Awaitable[T]]
log = logging.getLogger("publieksdata.aggregator")


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no more work."""


class Writer:
    def __init__(self, factory: async_sessionmaker[AsyncSession], max_batch: int = 500) -> None:
        self.factory = factory
        self.max_batch = max_batch
        self._queue: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
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
        if self._closing:
            raise WriterClosed("the aggregator is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
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

    async def _commit(self, batch: list[tuple[Operation[Any], asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with self.factory() as session, session.begin():
                for op, future in batch:
                    try:
                        async with session.begin_nested():
                            value = await op(session)
                    except Exception as exc:  # this operation only; the batch goes on
                        outcomes.append((future, None, exc))
                    else:
                        outcomes.append((future, value, None))
        except Exception as exc:  # the commit itself failed: nothing in the batch was written
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
