"""Answering queries (design §6–§7), on SQLite and PostgreSQL: signed answers, idempotency,
refusals that change nothing, and concurrent queries that never overspend."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from node.identity import load_signing_key
from node.services import ledger
from node.services.answering import Answered, Answerer, Outcome
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from protocol.catalogue import DIMENSIONS
from protocol.messages import ANSWER, QueryAnswer, QueryRequest, Refusal, RefusalReason
from protocol.query import Bounds, Measure, Mechanism, Mode, Privacy
from protocol.signing import Envelope, verify_once
from tests.factories import Row, write_rows
from tests.nodekit import (
    BudgetTables,
    budget_tables,
    make_node,
    make_spec,
    open_answerer,
    request_of,
)

ALL = (Measure.VISITS, Measure.PERSONS, Measure.REVENUE)
ROWS = [
    Row(person=1, event_date=date(2025, 2, 1)),
    Row(person=1, event_date=date(2025, 3, 1)),
    Row(person=1, event_date=date(2025, 4, 1), price_cents=4000),
    Row(person=2, event_date=date(2025, 2, 1)),
    Row(person=2, event_date=date(2025, 5, 1), artform="dance", price_cents=1500),
    Row(person=2, event_date=date(2025, 6, 1), artform="dance", price_cents=1500),
    Row(person=3, event_date=date(2025, 7, 1), artform="film", status="refunded"),
    Row(person=4, event_date=date(2024, 7, 1), artform="film"),
]


@pytest.fixture
def node(tmp_path: Path, db_url: str) -> Iterator[tuple[NodeSettings, Engine]]:
    settings, _ = make_node(tmp_path, db_url, unsafe_disable_noise=True)
    engine = make_engine(settings.database_url)
    write_rows(engine, ROWS)
    yield settings, engine
    engine.dispose()


def answered(outcome: Outcome) -> Answered:
    assert isinstance(outcome, Answered), outcome
    return outcome


def refused(outcome: Outcome, reason: RefusalReason) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    assert outcome.reason is reason, outcome
    return outcome


def decode(settings: NodeSettings, body: bytes) -> QueryAnswer:
    """Verify an answer with the node's public key and parse its payload."""
    key = load_signing_key(settings.signing_key_path)
    envelope = Envelope.model_validate_json(body)
    return QueryAnswer.model_validate(verify_once(envelope, ANSWER, key.public))


def with_settings(settings: NodeSettings, **overrides: object) -> NodeSettings:
    return NodeSettings.load(settings.home, **overrides)


# -- answers ------------------------------------------------------------------------------------


def test_an_answer_is_a_signed_envelope_recorded_in_the_ledger(
    node: tuple[NodeSettings, Engine],
) -> None:
    settings, engine = node
    spec = make_spec("q-answer-01", measures=ALL)
    with open_answerer(settings) as answerer:
        result = answered(answerer.answer(request_of(spec, "alice"), "querierkey000001"))
    assert not result.replayed
    answer = decode(settings, result.body)
    assert answer.query_id == "q-answer-01"
    assert answer.query_hash == spec.digest()
    assert answer.cells == tuple(spec.cells())
    assert answer.privacy.rho == 0.05
    assert answer.budget.spent_rho == pytest.approx(0.05)
    assert answer.budget.cap_rho == 1.0
    with make_sessionmaker(engine)() as session:
        entry = ledger.stored_answer(session, "q-answer-01")
        assert entry is not None
        assert bytes(entry.answer) == result.body
        assert entry.answer_sha256 == hashlib.sha256(result.body).hexdigest()
        assert entry.rho == 0.05 and entry.rho_units == ledger.to_units(0.05)
        assert entry.query_hash == spec.digest()
        assert entry.analyst == "alice"
        assert entry.requester_key_id == "querierkey000001"
        assert entry.period == answer.budget.period
    assert budget_tables(engine).periods == [(answer.budget.period, ledger.to_units(0.05))]


def test_unsafe_disable_noise_gives_exact_values(node: tuple[NodeSettings, Engine]) -> None:
    settings, _ = node
    spec = make_spec(measures=ALL, bounds=Bounds(max_visits_per_person=10))
    with open_answerer(settings) as answerer:
        answer = decode(settings, answered(answerer.answer(request_of(spec), "k")).body)
    assert answer.noise is False
    codes = [cell[0] for cell in answer.cells]
    assert codes == list(DIMENSIONS["artform"].codes)
    expected = {
        Measure.VISITS: {"theatre": 4, "dance": 2},  # refunded and out-of-period rows do not count
        Measure.PERSONS: {"theatre": 2, "dance": 1},
        Measure.REVENUE: {"theatre": 2500 * 3 + 4000, "dance": 3000},
    }
    for measure, by_code in expected.items():
        result = answer.measure(measure)
        assert result.mechanism is None and result.noise_sd == 0
        assert dict(zip(codes, result.values, strict=True)) == {c: by_code.get(c, 0) for c in codes}


def test_noisy_answers_are_noisy(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(tmp_path, db_url)
    with open_answerer(settings) as answerer:
        answer = decode(settings, answered(answerer.answer(request_of(make_spec()), "k")).body)
    assert answer.noise is True
    assert answer.measures[0].mechanism is Mechanism.GAUSSIAN
    assert answer.measures[0].noise_sd > 0


def test_pure_epsilon_queries_are_charged_epsilon_squared_over_two(
    node: tuple[NodeSettings, Engine],
) -> None:
    settings, engine = node
    privacy = Privacy(mechanism=Mechanism.LAPLACE, epsilon=0.4)
    with open_answerer(settings) as answerer:
        answered(answerer.answer(request_of(make_spec("q-laplace-1", privacy=privacy)), "k"))
    tables = budget_tables(engine)
    assert tables.ledger_units == ledger.to_units(0.08)
    assert tables.periods[0][1] == ledger.to_units(0.08)


# -- idempotency --------------------------------------------------------------------------------


def test_a_repeated_query_id_returns_the_stored_answer_and_spends_nothing(
    tmp_path: Path, db_url: str
) -> None:
    settings, _ = make_node(tmp_path, db_url)  # with noise: a fresh answer would differ
    engine = make_engine(settings.database_url)
    try:
        write_rows(engine, ROWS)
        spec = make_spec("q-retry-0001", measures=ALL)
        with open_answerer(settings) as answerer:
            first = answered(answerer.answer(request_of(spec), "k"))
            before = budget_tables(engine)
            for _ in range(3):
                again = answered(answerer.answer(request_of(spec), "k"))
                assert again.replayed
                assert again.body == first.body
        # A fresh process (new engines) gives the same bytes too.
        with open_answerer(settings) as answerer:
            assert answered(answerer.answer(request_of(spec), "k")).body == first.body
        assert budget_tables(engine) == before
    finally:
        engine.dispose()


def test_the_same_query_id_for_another_query_is_refused(
    node: tuple[NodeSettings, Engine],
) -> None:
    settings, engine = node
    with open_answerer(settings) as answerer:
        answered(answerer.answer(request_of(make_spec("q-reused-01")), "k"))
        before = budget_tables(engine)
        other = make_spec("q-reused-01", group_by=("month",))
        refusal = refused(answerer.answer(request_of(other), "k"), RefusalReason.QUERY_ID_REUSED)
        assert refusal.query_id == "q-reused-01"
        assert "new id" in refusal.message
    assert budget_tables(engine) == before


# -- budget -------------------------------------------------------------------------------------


def test_over_budget_is_refused_and_changes_nothing(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(tmp_path, db_url, budget_rho=0.1, unsafe_disable_noise=True)
    engine = make_engine(settings.database_url)
    try:
        with open_answerer(settings) as answerer:
            answered(answerer.answer(request_of(make_spec("q-budget-01", rho=0.06)), "k"))
            before = budget_tables(engine)
            refusal = refused(
                answerer.answer(request_of(make_spec("q-budget-02", rho=0.05)), "k"),
                RefusalReason.BUDGET_EXHAUSTED,
            )
            assert not any(char.isdigit() for char in refusal.message)  # no budget figures
            assert budget_tables(engine) == before
            # A query that still fits is answered.
            answered(answerer.answer(request_of(make_spec("q-budget-03", rho=0.04)), "k"))
        assert budget_tables(engine).periods[0][1] == ledger.cap_units(0.1)
    finally:
        engine.dispose()


def test_the_debit_is_the_authority_not_the_early_check(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = make_node(tmp_path, db_url, budget_rho=0.1)
    monkeypatch.setattr(ledger, "can_afford", lambda *_args: True)
    engine = make_engine(settings.database_url)
    try:
        with open_answerer(settings) as answerer:
            answered(answerer.answer(request_of(make_spec("q-authority1", rho=0.1)), "k"))
            before = budget_tables(engine)
            refused(
                answerer.answer(request_of(make_spec("q-authority2", rho=0.01)), "k"),
                RefusalReason.BUDGET_EXHAUSTED,
            )
        assert budget_tables(engine) == before
    finally:
        engine.dispose()


def test_analyst_caps(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(tmp_path, db_url, analyst_budget_rho=0.1)
    engine = make_engine(settings.database_url)
    try:
        with open_answerer(settings) as answerer:
            answered(answerer.answer(request_of(make_spec("q-analyst-1"), "alice"), "k"))
            answered(answerer.answer(request_of(make_spec("q-analyst-2"), "alice"), "k"))
            before = budget_tables(engine)
            refused(
                answerer.answer(request_of(make_spec("q-analyst-3"), "alice"), "k"),
                RefusalReason.ANALYST_BUDGET_EXHAUSTED,
            )
            assert budget_tables(engine) == before
            answered(answerer.answer(request_of(make_spec("q-analyst-4"), "bob"), "k"))
        tables = budget_tables(engine)
        assert [row[1:] for row in tables.analysts] == [
            ("alice", ledger.to_units(0.1)),
            ("bob", ledger.to_units(0.05)),
        ]
        assert tables.periods[0][1] == tables.ledger_units == ledger.to_units(0.15)
    finally:
        engine.dispose()


# -- policy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "spec_fields", "reason"),
    [
        ({"max_cells": 10}, {"group_by": ("month",)}, RefusalReason.POLICY_CELLS),
        (
            {"allowed_dimensions": ["month", "age_band"]},
            {"group_by": ("artform",)},
            RefusalReason.POLICY_DIMENSION,
        ),
        (
            {"allowed_dimensions": ["month"]},
            {"group_by": ("month",), "filters": {"channel": ("online",)}},
            RefusalReason.POLICY_DIMENSION,
        ),
        (
            {"max_visits_per_person": 5},
            {"bounds": Bounds(max_visits_per_person=6)},
            RefusalReason.POLICY_BOUNDS,
        ),
        ({"max_rho_per_query": 0.2}, {"rho": 0.21}, RefusalReason.POLICY_COST),
        (
            {"max_rho_per_query": 0.2},
            {"privacy": Privacy(mechanism=Mechanism.LAPLACE, epsilon=0.7)},  # ρ = 0.245
            RefusalReason.POLICY_COST,
        ),
        ({}, {"mode": Mode.SECURE}, RefusalReason.POLICY_MODE),
    ],
)
def test_policy_refusals_spend_nothing(
    tmp_path: Path,
    db_url: str,
    settings_: dict[str, object],
    spec_fields: dict[str, object],
    reason: RefusalReason,
) -> None:
    settings, _ = make_node(tmp_path, db_url, **settings_)
    engine = make_engine(settings.database_url)
    try:
        before = budget_tables(engine)
        with open_answerer(settings) as answerer:
            spec = make_spec("q-policy-01", **spec_fields)  # type: ignore[arg-type]
            refusal = refused(answerer.answer(request_of(spec), "k"), reason)
            assert refusal.query_id == "q-policy-01"
            assert refusal.message
        assert budget_tables(engine) == before == BudgetTables([], [], [])
    finally:
        engine.dispose()


def test_queries_within_policy_are_answered(tmp_path: Path, db_url: str) -> None:
    settings, _ = make_node(
        tmp_path,
        db_url,
        max_cells=13,  # twelve months and "unknown"
        allowed_dimensions=["month", "channel"],
        max_visits_per_person=6,
        max_rho_per_query=0.2,
    )
    spec = make_spec(
        group_by=("month",),
        filters={"channel": ("online",)},
        bounds=Bounds(max_visits_per_person=6),
        rho=0.2,
    )
    with open_answerer(settings) as answerer:
        answered(answerer.answer(request_of(spec), "k"))


# -- concurrency --------------------------------------------------------------------------------


def run_concurrently(
    settings: NodeSettings, requests: list[QueryRequest], workers: int = 16
) -> list[Outcome]:
    """Each request in its own thread and its own sessions, released together by a barrier."""
    with open_answerer(settings) as shared:
        barrier = threading.Barrier(min(workers, len(requests)), timeout=30)

        def ask(request: QueryRequest) -> Outcome:
            answerer = Answerer(settings, shared.writer, shared.reader, shared.key)
            # A batch tail smaller than the barrier breaks it (after its timeout); then run anyway.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            return answerer.answer(request, "querierkey000001")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(ask, requests, timeout=120))


@pytest.mark.parametrize("early_check", [True, False], ids=["early-check", "debit-only"])
def test_concurrent_queries_never_overspend(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, early_check: bool
) -> None:
    settings, _ = make_node(tmp_path, db_url, budget_rho=1.0)
    if not early_check:
        monkeypatch.setattr(ledger, "can_afford", lambda *_args: True)
    engine = make_engine(settings.database_url)
    try:
        write_rows(engine, ROWS)
        requests = [request_of(make_spec(f"q-concurrent-{i:03d}", rho=0.05)) for i in range(60)]
        outcomes = run_concurrently(settings, requests, workers=20)
        kinds = Counter("answered" if isinstance(o, Answered) else o.reason.value for o in outcomes)
        assert kinds == {"answered": 20, "budget_exhausted": 40}
        tables = budget_tables(engine)
        assert len(tables.periods) == 1
        assert tables.periods[0][1] == ledger.cap_units(1.0) == tables.ledger_units
        assert len(tables.entries) == 20
        answered_ids = {
            decode(settings, o.body).query_id for o in outcomes if isinstance(o, Answered)
        }
        assert answered_ids == {row[0] for row in tables.entries}
        bodies = {hashlib.sha256(o.body).hexdigest() for o in outcomes if isinstance(o, Answered)}
        assert bodies == {row[4] for row in tables.entries}
    finally:
        engine.dispose()


@pytest.mark.parametrize("early_check", [True, False], ids=["early-check", "debit-only"])
@pytest.mark.parametrize("cap", [1.0, 0.05], ids=["roomy-cap", "cap-fits-one"])
def test_concurrent_retries_of_one_query_id_debit_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, cap: float, early_check: bool
) -> None:
    """A retry racing the original gets the original's bytes, even when the original spent the
    last of the budget."""
    settings, _ = make_node(tmp_path, db_url, budget_rho=cap)
    if not early_check:
        monkeypatch.setattr(ledger, "can_afford", lambda *_args: True)  # all race to the debit
    engine = make_engine(settings.database_url)
    try:
        write_rows(engine, ROWS)
        spec = make_spec("q-same-id-0001", rho=0.05, measures=ALL)
        outcomes = run_concurrently(settings, [request_of(spec)] * 20, workers=20)
        bodies = {answered(o).body for o in outcomes}
        assert len(bodies) == 1
        assert sum(not answered(o).replayed for o in outcomes) == 1
        tables = budget_tables(engine)
        assert len(tables.entries) == 1
        assert tables.entries[0][4] == hashlib.sha256(bodies.pop()).hexdigest()
        assert tables.periods[0][1] == tables.ledger_units == ledger.to_units(0.05)
    finally:
        engine.dispose()
