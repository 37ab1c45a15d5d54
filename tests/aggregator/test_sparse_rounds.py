"""Secure rounds over the sparse neighbour graph, end to end in process (protocol/secgraph.py).

Fifteen real node apps, with the sparse graph switched on from 12 nodes (``SPARSE_FROM`` is 100;
a federation of 100 app pairs would make these tests slow): at n = 15 the graph is then sparse
(k = 10 neighbours of 14, t = 9 of each closed neighbourhood of 11), so every node masks with
and shares its secrets among ten nodes only. With noise off the sum must equal the pooled
computation exactly; dropouts after sharing are recovered from the dropped nodes' neighbours; a
neighbourhood that falls below its threshold fails the round without releasing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from protocol import secgraph
from protocol.messages import Phase, SecAggShares
from protocol.query import Mode
from protocol.results import RoundState
from tests.aggregator.test_pooled import audience
from tests.aggregator.test_secure_rounds import assert_equals_pooled, drop_at
from tests.fedkit import federation

pytestmark = pytest.mark.anyio

NODES = 15
AGG_EXACT: dict[str, object] = {"unsafe_accept_exact_answers": True}
NODE_EXACT: dict[str, object] = {"unsafe_disable_noise": True}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def sparse_from_twelve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secgraph, "SPARSE_FROM", 12)


def test_fifteen_nodes_make_a_sparse_graph() -> None:
    bounds = secgraph.sparse_parameters(NODES)
    assert bounds is not None and (bounds.degree, bounds.threshold) == (10, 9)
    shape = secgraph.neighbourhoods(NODES, 10)
    assert not shape.complete and (shape.radius, shape.holders, shape.threshold) == (5, 11, 9)


def sealed_counts(db_url: str, round_id: str) -> list[int]:
    engine = create_engine(db_url.replace("+aiosqlite", ""))
    with engine.connect() as connection:
        bodies = connection.execute(
            text("SELECT shares FROM task WHERE round_id = :r AND shares IS NOT NULL"),
            {"r": round_id},
        ).scalars()
        counts = [
            len(SecAggShares.model_validate(json.loads(body)["payload"]).sealed) for body in bodies
        ]
    engine.dispose()
    return counts


@pytest.mark.parametrize("dropouts", [0, 2])
async def test_a_sparse_round_sums_exactly_and_recovers_dropouts(
    tmp_path: Path, dropouts: int
) -> None:
    """Two nodes that vanish after sharing: each dropped node has at most one dropped neighbour,
    so t = 9 of its 10 neighbours reveal its mask key and its pair masks come out."""
    node_rows = [audience(i, 12 + i, seed=200 + i) for i in range(NODES)]
    gone = list(range(NODES - dropouts, NODES))
    async with federation(
        tmp_path, node_rows, agg_settings=AGG_EXACT, node_settings=NODE_EXACT
    ) as fed:
        for i in gone:
            drop_at(fed, i, Phase.MASK)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, deadline_seconds=8
        )
        assert created.mode is Mode.SECURE and created.threshold == 10  # ⌈2·15/3⌉
        if dropouts:
            await fed.expire(created.round_id, phase=Phase.MASK, silent=dropouts)
        result = await fed.wait(created.round_id)
        db_url = fed.settings.database_url
    assert result.state is RoundState.CLOSED and result.failure is None, result.failure
    assert result.coverage.answered == NODES - dropouts
    # Each node sealed shares to its ten neighbours only, not to all fourteen peers.
    assert sealed_counts(db_url, created.round_id) == [10] * NODES
    assert_equals_pooled(tmp_path, node_rows, list(range(NODES - dropouts)), result)


async def test_a_neighbourhood_below_its_threshold_fails_the_round(tmp_path: Path) -> None:
    """Five nodes vanish after sharing: ten remain, the round's threshold, but on a ring of 15
    with radius 5 some dropped node then has two dropped neighbours, and only 8 < 9 of its
    neighbours could reveal its mask key; survivors with more than two dropped neighbours refuse
    to reveal at all (fewer than t of their neighbourhood survive). Nothing is released."""
    node_rows = [audience(i, 10, seed=300 + i) for i in range(NODES)]
    async with federation(
        tmp_path, node_rows, agg_settings=AGG_EXACT, node_settings=NODE_EXACT
    ) as fed:
        for i in range(NODES - 5, NODES):
            drop_at(fed, i, Phase.MASK)
        created = await fed.ask(
            report={"name": "volume", "year": 2025, "rho": 0.1}, deadline_seconds=8
        )
        await fed.expire(created.round_id, phase=Phase.MASK, silent=5)
        result = await fed.wait(created.round_id)
    assert result.state is RoundState.CLOSED
    assert result.failure in {"too_few_shares", "too_few_reveals"}
    assert result.measures == () and result.quorum_met is False
