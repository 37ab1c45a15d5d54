"""Engines for the aggregator: an async engine for the service, a sync one for migrations.

The same database URL serves both: ``sqlite:///…`` runs on aiosqlite in the service, and
``postgresql+psycopg://…`` on psycopg's own async mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from servicekit import migrations
from servicekit.migrations import SchemaOutOfDate as SchemaOutOfDate

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_file(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy, not the driver, decides when to BEGIN
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_sync_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _sqlite_file(parsed)
        engine = create_engine(parsed.set(drivername="sqlite"), poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_async_engine(url: str, *, write: bool = True) -> AsyncEngine:
    """The service's engine. On SQLite, ``write=True`` makes every transaction begin IMMEDIATE,
    so writers queue instead of failing; ``write=False`` begins deferred, for sessions that only
    read: in WAL mode they read a snapshot without waiting for the write lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _sqlite_file(parsed)
        engine = create_async_engine(
            parsed.set(drivername="sqlite+aiosqlite"), connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_async_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    return migrations.alembic_config(MIGRATIONS, engine)


def upgrade(url: str, revision: str = "head") -> None:
    engine = make_sync_engine(url)
    try:
        command.upgrade(alembic_config(engine), revision)
    finally:
        engine.dispose()


def head_revision() -> str:
    return migrations.head_revision(MIGRATIONS)


def current_revision(url: str) -> str | None:
    engine = make_sync_engine(url)
    try:
        return migrations.current_revision(engine)
    finally:
        engine.dispose()


def require_current_schema(url: str) -> None:
    current = current_revision(url)
    head = head_revision()
    if current != head:
        state = migrations.schema_state(current)
        raise SchemaOutOfDate(
            f"The aggregator database {state}; this version of publieksdata needs {head}. "
            "Run: publieksdata aggregator db upgrade"
        )


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string (for psycopg directly)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
