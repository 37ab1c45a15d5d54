"""Alembic environment: the engine comes from keyholder.storage.db, never from a file."""

from __future__ import annotations

from alembic import context

from keyholder.storage.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - only reached when someone runs the alembic CLI directly
    raise RuntimeError("run migrations through 'publieksdata keyholder db upgrade'")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
