"""With noise off, the federated result equals the pooled computation exactly (design §9).

Three nodes hold disjoint audiences. The same query, run by the node's own bounded aggregate over
one database holding all three nodes' rows (same people, same ticket references), gives exactly
the sector totals the aggregator merged from the three answers — also where the per-person
bounds bite, since each person's kept rows depend only on that person's own rows.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from node.services.aggregate import run_aggregate
from node.storage.db import make_engine, make_sessionmaker, upgrade
from protocol.query import Measure
from protocol.results import RoundState
from tests.factories import Row, write_rows
from tests.fedkit import federation

pytestmark = pytest.mark.anyio

ARTFORMS = ("theatre", "dance", "film", "classical_music", "heritage")
AGES = ("0_11", "18_29", "30_44", "45_64", "65_79")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def audience(node: int, people: int, seed: int) -> list[Row]:
    """Disjoint person ids per node; some people visit far more often than the bounds allow."""
    rng = random.Random(seed)
    rows = []
    for p in range(people):
        person = node * 10_000 + p + 1
        visits = rng.choice([1, 1, 2, 3, 5, 25])  # 25 > max_visits_per_person: bounds bite
        age = rng.choice(AGES)
        for _ in range(visits):
            rows.append(
                Row(
                    person=person,
                    event_date=date(2025, rng.randint(1, 12), rng.randint(1, 28)),
                    artform=rng.choice(ARTFORMS),
                    age_band=age,
                    price_cents=rng.choice([0, 750, 1500, 2500, 4000, 20_000]),
                )
            )
    return rows


@pytest.mark.parametrize("report", ["standard", "reach_age", "volume"])
async def test_noise_off_federation_equals_the_pooled_computation(
    tmp_path: Path, report: str
) -> None:
    node_rows = [audience(i, 60 + 20 * i, seed=i) for i in range(3)]
    async with federation(
        tmp_path,
        node_rows,
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True},
    ) as fed:
        created = await fed.ask(report={"name": report, "year": 2025, "rho": 0.1}, quorum=3)
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED and result.coverage.answered == 3
    assert result.noise is False

    pooled = make_engine(f"sqlite:///{tmp_path / 'pooled.db'}")
    try:
        upgrade(pooled)
        write_rows(pooled, [row for rows in node_rows for row in rows])
        with make_sessionmaker(pooled)() as session:
            exact = run_aggregate(session, result.spec)  # the round's spec, query id included
    finally:
        pooled.dispose()

    assert [m.measure for m in result.measures] == list(result.spec.measures)
    for estimate in result.measures:
        assert list(estimate.estimates) == exact[estimate.measure], estimate.measure
        assert set(estimate.standard_errors) == {0.0}
    if Measure.VISITS in exact:  # the bounds did bite: pooled bounded < raw row count
        assert sum(exact[Measure.VISITS]) < sum(len(rows) for rows in node_rows)
