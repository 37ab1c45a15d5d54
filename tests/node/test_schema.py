"""The migrated schema equals the models, and the version check guards every start."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from node.storage.db import (
    SchemaOutOfDate,
    current_revision,
    head_revision,
    make_engine,
    require_current_schema,
    upgrade,
)
from node.storage.models import Base


def test_migrated_schema_equals_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_migration_creates_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_require_current_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        with pytest.raises(SchemaOutOfDate) as info:
            require_current_schema(engine)
        assert "publieksdata node db upgrade" in str(info.value)
        assert "has no schema yet" in str(info.value)
        upgrade(engine)
        require_current_schema(engine)
        assert current_revision(engine) == head_revision()
        upgrade(engine)  # a second upgrade is a no-op
        require_current_schema(engine)
    finally:
        engine.dispose()
