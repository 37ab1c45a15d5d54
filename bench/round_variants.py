"""Instrumentation for the round benchmark: counting the in-process aggregator's SQL statements.

The two fixes this module once applied as experiments (``--variant single-flight`` and
``--variant deferred-reads``, figures in bench/RESULTS.md) are now in the shipped aggregator:
``NodeKeys.fresh`` reloads single-flight, and on SQLite only the group writer's engine begins
``IMMEDIATE`` (``aggregator/app.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class StatementCounter:
    """Counts the SQL statements the in-process aggregator sends, by kind (first words)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import AsyncEngine

        import aggregator.app as app_module

        make = app_module.make_async_engine  # type: ignore[attr-defined]

        def counted(url: str, **kwargs: Any) -> AsyncEngine:
            engine: AsyncEngine = make(url, **kwargs)

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
