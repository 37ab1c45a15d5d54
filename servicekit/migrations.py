"""Alembic set-up every service uses: the configuration that points at a service's migrations
directory and carries the caller's engine, the schema-version check, and the body of ``env.py``.

The engine always comes from the caller, never from an ini file, so migrations run on exactly the
database the service opens.
"""

from __future__ import annotations

from pathlib import Path

from alembic import context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at the version this code expects."""


def alembic_config(migrations: Path, engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["engine"] = engine
    return config


def head_revision(migrations: Path) -> str:
    script = ScriptDirectory.from_config(alembic_config(migrations, create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_state(current: str | None) -> str:
    """How a database's schema version reads in a ``SchemaOutOfDate`` message."""
    return "has no schema yet" if current is None else f"is at schema version {current}"


def run_env(metadata: MetaData, upgrade_command: str) -> None:
    """The body of a service's migrations ``env.py``: run the migrations on the engine that
    ``alembic_config`` put in the configuration."""
    engine = context.config.attributes.get("engine")
    if engine is None:  # pragma: no cover - only reached when someone runs the alembic CLI directly
        raise RuntimeError(f"run migrations through '{upgrade_command}'")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
