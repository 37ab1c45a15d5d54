"""A node database made by the previous release (schema 0002) migrates forward without losing
anything, and its earlier answers start the new audit chain, which then verifies."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

from sqlalchemy import func, insert, select

from node.services import audit
from node.storage.db import current_revision, head_revision, make_engine, make_sessionmaker
from node.storage.db import upgrade as migrate
from node.storage.models import Admission, BudgetPeriod, LedgerEntry, Person, TrustedKey
from tests.factories import Row, write_rows

PREVIOUS_RELEASE = "0002"


def test_a_previous_release_database_upgrades_without_loss(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine, PREVIOUS_RELEASE)
        write_rows(engine, [Row(person=p, event_date=date(2025, 9, p)) for p in range(1, 13)])
        answers = [f'{{"answer": {i}}}'.encode() for i in range(3)]
        with engine.begin() as conn:
            conn.execute(insert(BudgetPeriod).values(period="2026", spent_units=150_000_000))
            conn.execute(
                insert(TrustedKey).values(
                    key_id="a" * 16,
                    public_key="B" * 43,
                    label="aggregator",
                    added_at=datetime(2026, 1, 2, tzinfo=UTC),
                )
            )
            for i, body in enumerate(answers):
                conn.execute(
                    insert(LedgerEntry).values(
                        query_id=f"q-{i}",
                        query_hash="0" * 64,
                        requester_key_id="a" * 16,
                        analyst="analist",
                        period="2026",
                        rho_units=50_000_000,
                        rho=0.05,
                        epsilon=1.2,
                        delta=1e-7,
                        created_at=datetime(2026, 3, 1 + i, 12, tzinfo=UTC),
                        answer=body,
                        answer_sha256=hashlib.sha256(body).hexdigest(),
                        mode="secure" if i == 2 else "independent",
                        threshold=3 if i == 2 else None,
                        rho_worst=0.15 if i == 2 else None,
                    )
                )
        with engine.connect() as conn:
            before = {
                "admissions": conn.execute(select(Admission).order_by(Admission.id)).all(),
                "persons": conn.execute(select(Person).order_by(Person.id)).all(),
                "ledger": conn.execute(select(LedgerEntry).order_by(LedgerEntry.id)).all(),
                "budget": conn.execute(select(BudgetPeriod)).all(),
            }
        migrate(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            after = {
                "admissions": conn.execute(select(Admission).order_by(Admission.id)).all(),
                "persons": conn.execute(select(Person).order_by(Person.id)).all(),
                "ledger": conn.execute(select(LedgerEntry).order_by(LedgerEntry.id)).all(),
                "budget": conn.execute(select(BudgetPeriod)).all(),
            }
            assert conn.scalar(select(func.count()).select_from(TrustedKey)) == 1
        assert after == before
        factory = make_sessionmaker(engine)
        with factory() as session:
            result = audit.verify(session)
            events = audit.entries(session)
        assert result.ok, result.problems
        assert result.events == 3
        assert [e.data["query_id"] for e in reversed(events)] == ["q-0", "q-1", "q-2"]
        assert all(e.data["backfilled"] for e in events)
        # The chain goes on from the backfilled events.
        with factory.begin() as session:
            audit.append(session, audit.POLICY_CHANGE, changes={})
        with factory() as session:
            assert audit.verify(session).ok
    finally:
        engine.dispose()
