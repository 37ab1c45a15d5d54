"""Proposed aggregator changes, applied in-process for the round benchmark (``--variant``).

These are experiments, not the shipped code: each patches the aggregator modules in this
process, so they only take effect with ``--transport asgi``. They exist so that the figures for
a proposed fix can be reproduced before the fix is made in the aggregator itself.

* ``single-flight``: ``NodeKeys.fresh`` starts at most one reload at a time and every poll that
  finds the cache stale awaits that one. As shipped, each poll that arrives while the cache is
  older than 30 s starts its own reload of the whole node table, so with 1,000 nodes polling up
  to ~1,000 reloads run at once and exhaust the connection pool (``QueuePool`` timeouts, HTTP 500
  to nodes and analysts).
* ``deferred-reads``: on SQLite only the group writer's engine begins ``IMMEDIATE``; every other
  session begins deferred and, in WAL mode, reads without taking the write lock. As shipped,
  every session (a poll's task lookup, a result read) begins ``IMMEDIATE``, so reads queue
  behind each other and behind the writer's batch in SQLite's busy handler, which sleeps in
  steps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

VARIANTS = ("single-flight", "deferred-reads")


def single_flight() -> None:
    from aggregator.services import registry

    async def fresh(self: registry.NodeKeys) -> None:
        if time.monotonic() - self._loaded_at > self.refresh:
            loading: asyncio.Future[None] | None = getattr(self, "_bench_loading", None)
            if loading is None or loading.done():
                loading = asyncio.ensure_future(self.load())
                self._bench_loading = loading  # type: ignore[attr-defined]
            await asyncio.shield(loading)

    registry.NodeKeys.fresh = fresh  # type: ignore[method-assign]


def deferred_reads() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

    import aggregator.app as app_module
    from aggregator.services.writer import Writer
    from aggregator.storage import db

    shipped = db.make_async_engine

    def engine(url: str, immediate: bool = False) -> AsyncEngine:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return shipped(url)
        result = create_async_engine(
            parsed.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 30}
        )
        event.listen(result.sync_engine, "connect", db._sqlite_pragmas)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(result.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return result

    class ImmediateWriter(Writer):
        def __init__(self, factory: Any, max_batch: int = 500) -> None:
            url = factory.kw["bind"].url
            if url.get_backend_name() == "sqlite":
                plain = url.set(drivername="sqlite").render_as_string(hide_password=False)
                self._own_engine: AsyncEngine | None = engine(plain, immediate=True)
                factory = async_sessionmaker(self._own_engine, expire_on_commit=False)
            else:
                self._own_engine = None
            super().__init__(factory, max_batch)

        async def stop(self) -> None:
            await super().stop()
            if self._own_engine is not None:
                await self._own_engine.dispose()

    app_module.make_async_engine = engine  # type: ignore[attr-defined]
    app_module.Writer = ImmediateWriter  # type: ignore[attr-defined]


class StatementCounter:
    """Counts the SQL statements the in-process aggregator sends, by kind (first words)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import AsyncEngine

        import aggregator.app as app_module

        make = app_module.make_async_engine  # type: ignore[attr-defined]

        def counted(url: str) -> AsyncEngine:
            engine: AsyncEngine = make(url)

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def count(*args: Any) -> None:
                words = " ".join(str(args[2]).split()[:3])
                kind = "SAVEPOINT / RELEASE" if "SAVEPOINT" in words else words
                self.counts[kind[:40]] += 1

            return engine

        app_module.make_async_engine = counted  # type: ignore[attr-defined]

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


_APPLY: dict[str, Callable[[], None]] = {
    "single-flight": single_flight,
    "deferred-reads": deferred_reads,
}


def apply(names: list[str]) -> None:
    for name in names:
        _APPLY[name]()
