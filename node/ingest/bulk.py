"""Driver-level bulk statements shared by the import's writers.

SQLAlchemy Core builds every other statement; these three are on the import's hot path, where
Core's per-row parameter processing would cost more than the database's own work (measured: about
6 µs a row for the admission insert). Identifiers come from the table metadata and are quoted by
the dialect; values are always bound, never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select, text

from node.ingest.errors import IngestError

LOOKUP_BATCH = 500
SUPPORTED = ("sqlite", "postgresql")


def chunks(items: Sequence[Any], size: int = LOOKUP_BATCH) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (for IN lists of bounded length)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marker(conn: Connection) -> str:
    """The driver's positional parameter marker."""
    return "?" if conn.dialect.name == "sqlite" else "%s"


def check_dialect(conn: Connection) -> None:
    if conn.dialect.name not in SUPPORTED:
        raise IngestError(
            f"imports support SQLite and PostgreSQL databases, not {conn.dialect.name}"
        )


def insert_sql(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES (?, …)`` in the driver's parameter style."""
    prep = conn.dialect.identifier_preparer
    names = ", ".join(prep.quote(c) for c in columns)
    values = ", ".join([marker(conn)] * len(columns))
    return f"INSERT INTO {prep.format_table(table)} ({names}) VALUES ({values})"  # noqa: S608


class IdAllocator:
    """Primary keys for new rows, handed out before the rows are inserted (so no insert needs
    RETURNING, and rows of one chunk can reference each other)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._next: dict[str, int] = {}

    def take(self, table: Table, count: int) -> list[int]:
        if count == 0:
            return []
        if self.conn.dialect.name == "sqlite":
            # The import holds SQLite's write lock for its whole transaction: nobody else can
            # insert meanwhile, so the next rowids are ours.
            if table.name not in self._next:
                highest = self.conn.execute(select(func.max(table.c.id))).scalar()
                self._next[table.name] = (highest or 0) + 1
            start = self._next[table.name]
            self._next[table.name] = start + count
            return list(range(start, start + count))
        rows = self.conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": count},
        )
        return sorted(int(r[0]) for r in rows)
