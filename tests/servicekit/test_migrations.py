"""The shared Alembic set-up: every service's schema check raises the one SchemaOutOfDate, and a
fresh database upgraded through a service's env.py reaches that service's head."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.storage import db as aggregator_db
from keyholder.storage import db as keyholder_db
from node.storage import db as node_db
from servicekit import migrations


def test_every_service_raises_the_shared_schema_error() -> None:
    assert aggregator_db.SchemaOutOfDate is migrations.SchemaOutOfDate
    assert keyholder_db.SchemaOutOfDate is migrations.SchemaOutOfDate
    assert node_db.SchemaOutOfDate is migrations.SchemaOutOfDate


def test_schema_state_reads_both_ways() -> None:
    assert migrations.schema_state(None) == "has no schema yet"
    assert migrations.schema_state("k0001") == "is at schema version k0001"


def test_a_keyholder_database_goes_from_no_schema_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kh.db'}"
    with pytest.raises(migrations.SchemaOutOfDate, match="has no schema yet"):
        keyholder_db.require_current_schema(url)
    keyholder_db.upgrade(url)
    engine = keyholder_db.make_sync_engine(url)
    try:
        assert migrations.current_revision(engine) == keyholder_db.head_revision()
    finally:
        engine.dispose()
    keyholder_db.require_current_schema(url)
