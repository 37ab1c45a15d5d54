"""An aggregator database made by the previous release (schema a0003) migrates forward without
losing its enrolled nodes, and the new budget high-water mark starts empty."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from aggregator.storage.db import current_revision, head_revision, make_sync_engine, upgrade
from aggregator.storage.models import Node

PREVIOUS_RELEASE = "a0003"


def test_a_previous_release_database_upgrades_without_loss(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'aggregator.db'}"
    upgrade(url, PREVIOUS_RELEASE)
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(Node.__table__).values(
                    id="n1",
                    institution="Museum",
                    key_id="c" * 16,
                    public_key="D" * 43,
                    status="active",
                    joined_at=datetime(2026, 1, 5, tzinfo=UTC),
                    report='{"x": 1}',
                )
            )
        upgrade(url)
        assert current_revision(url) == head_revision()
        with engine.connect() as conn:
            row = conn.execute(select(Node)).one()
        assert (row.id, row.institution, row.key_id, row.report) == (
            "n1",
            "Museum",
            "c" * 16,
            '{"x": 1}',
        )
        assert row.budget_proof is None and row.budget_proof_units is None
    finally:
        engine.dispose()
