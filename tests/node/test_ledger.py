"""The budget ledger (design §7), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from node.services import ledger
from node.services.ledger import BudgetExhausted, Debit, cap_units, period_key, to_units
from node.storage.db import make_sessionmaker, transaction
from tests.nodekit import budget_tables

NOW = datetime(2025, 5, 17, 12, 0, tzinfo=UTC)


def debit_of(query_id: str, rho: float, analyst: str = "a", period: str = "2025") -> Debit:
    return Debit(
        query_id=query_id,
        query_hash="h" * 64,
        requester_key_id="0123456789abcdef",
        analyst=analyst,
        period=period,
        rho=rho,
        epsilon=1.0,
        delta=1e-7,
        created_at=NOW,
    )


def charge(
    engine: Engine,
    entry: Debit,
    *,
    cap: float = 1.0,
    analyst_cap: float | None = None,
    answer: bytes = b"answer",
) -> None:
    with transaction(make_sessionmaker(engine)) as session:
        ledger.debit(session, entry, cap_rho=cap, analyst_cap_rho=analyst_cap)
        ledger.record(session, entry, answer)


def spent(engine: Engine, period: str = "2025") -> int:
    with make_sessionmaker(engine)() as session:
        return ledger.spent_units(session, period)


# -- pure arithmetic ----------------------------------------------------------------------------


def test_charges_round_up_and_caps_round_down() -> None:
    assert to_units(0.1) == 100_000_000
    assert cap_units(0.1) == 100_000_000
    assert to_units(0.3) == 300_000_000  # 0.3 · 10⁹ is 300000000.00000006 in binary
    assert cap_units(1.0) == ledger.UNITS_PER_RHO
    assert to_units(1.5e-9) == 2
    assert cap_units(1.5e-9) == 1
    assert to_units(1e-12) == 1  # even a tiny charge costs something
    assert cap_units(1e-12) == 0
    for rho in (0.05, 0.1 / 3, 0.123456789123, 2 / 7, 9.999999):
        assert to_units(rho) >= rho * ledger.UNITS_PER_RHO - 1e-6
        assert cap_units(rho) <= rho * ledger.UNITS_PER_RHO + 1e-6
        assert cap_units(rho) <= to_units(rho)


def test_twenty_charges_of_a_twentieth_fit_a_cap_of_one() -> None:
    assert 20 * to_units(0.05) <= cap_units(1.0)
    assert 21 * to_units(0.05) > cap_units(1.0)


@pytest.mark.parametrize(
    ("moment", "kind", "key"),
    [
        (datetime(2025, 1, 1, tzinfo=UTC), "year", "2025"),
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "year", "2025"),
        (datetime(2025, 1, 1, tzinfo=UTC), "quarter", "2025-Q1"),
        (datetime(2025, 3, 31, tzinfo=UTC), "quarter", "2025-Q1"),
        (datetime(2025, 4, 1, tzinfo=UTC), "quarter", "2025-Q2"),
        (datetime(2025, 9, 30, tzinfo=UTC), "quarter", "2025-Q3"),
        (datetime(2025, 12, 1, tzinfo=UTC), "quarter", "2025-Q4"),
        (datetime(2025, 2, 9, tzinfo=UTC), "month", "2025-02"),
        (datetime(987, 11, 9, tzinfo=UTC), "month", "0987-11"),
    ],
)
def test_period_key(moment: datetime, kind: str, key: str) -> None:
    assert period_key(moment, kind) == key


def test_period_key_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="week"):
        period_key(NOW, "week")


# -- the ledger on both backends ----------------------------------------------------------------


def test_debit_within_the_cap(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 0.4))
    charge(engine, debit_of("q-00000002", 0.6))
    assert spent(engine) == cap_units(1.0)
    tables = budget_tables(engine)
    assert tables.periods == [("2025", cap_units(1.0))]
    assert tables.ledger_units == cap_units(1.0)
    with make_sessionmaker(engine)() as session:
        state = ledger.status(session, "2025", 1.0)
        assert state.spent_rho == pytest.approx(1.0)
        assert state.remaining_rho == 0.0
        assert not ledger.can_afford(session, "2025", 1e-9, 1.0)
        assert ledger.can_afford(session, "2026", 1.0, 1.0)


def test_over_the_cap_raises_and_changes_nothing(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 0.7))
    before = budget_tables(engine)
    with pytest.raises(BudgetExhausted) as caught:
        charge(engine, debit_of("q-00000002", 0.30001))
    assert caught.value.scope == "period"
    assert budget_tables(engine) == before
    assert spent(engine) == to_units(0.7)


def test_over_the_cap_in_a_fresh_period_leaves_no_row(engine: Engine) -> None:
    with pytest.raises(BudgetExhausted):
        charge(engine, debit_of("q-00000001", 0.5, period="2026"), cap=0.4)
    tables = budget_tables(engine)
    assert tables.periods == [] and tables.entries == []


def test_periods_have_separate_caps(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 1.0, period="2025"))
    charge(engine, debit_of("q-00000002", 1.0, period="2026"))
    assert spent(engine, "2025") == spent(engine, "2026") == cap_units(1.0)
    assert spent(engine, "2027") == 0


def test_per_analyst_caps(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 0.1, analyst="alice"), analyst_cap=0.2)
    charge(engine, debit_of("q-00000002", 0.1, analyst="alice"), analyst_cap=0.2)
    before = budget_tables(engine)
    with pytest.raises(BudgetExhausted) as caught:
        charge(engine, debit_of("q-00000003", 0.1, analyst="alice"), analyst_cap=0.2)
    assert caught.value.scope == "analyst"
    # The period debit that preceded the analyst check was rolled back with it.
    assert budget_tables(engine) == before
    charge(engine, debit_of("q-00000004", 0.2, analyst="bob"), analyst_cap=0.2)
    tables = budget_tables(engine)
    assert tables.analysts == [("2025", "alice", to_units(0.2)), ("2025", "bob", to_units(0.2))]
    assert tables.periods == [("2025", to_units(0.4))]


def test_the_period_cap_binds_before_the_analyst_cap(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 0.5, analyst="alice"), cap=0.6, analyst_cap=1.0)
    with pytest.raises(BudgetExhausted) as caught:
        charge(engine, debit_of("q-00000002", 0.5, analyst="bob"), cap=0.6, analyst_cap=1.0)
    assert caught.value.scope == "period"


def test_record_and_stored_answer(engine: Engine) -> None:
    body = b'{"signed": "answer \xe2\x9c\x93"}'
    charge(engine, debit_of("q-00000001", 0.25, analyst="alice"), answer=body)
    factory = make_sessionmaker(engine)
    with factory() as session:
        entry = ledger.stored_answer(session, "q-00000001")
        assert entry is not None
        assert bytes(entry.answer) == body
        assert entry.answer_sha256 == hashlib.sha256(body).hexdigest()
        assert entry.rho == 0.25 and entry.rho_units == to_units(0.25)
        assert entry.analyst == "alice"
        assert entry.query_hash == "h" * 64
        assert entry.requester_key_id == "0123456789abcdef"
        assert entry.period == "2025"
        assert entry.epsilon == 1.0 and entry.delta == 1e-7
        assert entry.created_at.replace(tzinfo=entry.created_at.tzinfo or UTC) == NOW
        assert ledger.stored_answer(session, "q-unknown") is None


def test_a_query_id_is_recorded_once(engine: Engine) -> None:
    charge(engine, debit_of("q-00000001", 0.1))
    before = budget_tables(engine)
    with pytest.raises(IntegrityError):
        charge(engine, debit_of("q-00000001", 0.1))
    assert budget_tables(engine) == before
