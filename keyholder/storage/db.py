"""The key holder's engine: synchronous, for the service (its routes run in the thread pool; the
work per request is CPU, not waiting), the CLI and migrations. SQLite by default (a key holder's
data is small); PostgreSQL works the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from servicekit import migrations
from servicekit.migrations import SchemaOutOfDate as SchemaOutOfDate

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy, not the driver, decides when to BEGIN
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # writers queue instead of failing


def make_sync_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite"), poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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


def require_current_schema(url: str) -> None:
    engine = make_sync_engine(url)
    try:
        current = migrations.current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        state = migrations.schema_state(current)
        raise SchemaOutOfDate(
            f"The key holder database {state}; this version of publieksdata needs {head}. "
            "Run: publieksdata keyholder db upgrade"
        )
