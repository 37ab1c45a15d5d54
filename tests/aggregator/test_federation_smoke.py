from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from protocol.results import NodeStatus, RoundState
from tests.factories import Row
from tests.fedkit import federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_round_reaches_every_node_and_merges(tmp_path: Path) -> None:
    rows = [
        [Row(person=p, event_date=date(2025, 3, 1 + p)) for p in range(1, 4 + i)] for i in range(3)
    ]
    async with federation(
        tmp_path,
        rows,
        agg_settings={"unsafe_accept_exact_answers": True},
        node_settings={"unsafe_disable_noise": True},
    ) as fed:
        spec = {"report": {"name": "volume", "year": 2025, "rho": 0.05}}
        created = await fed.ask(**spec)
        result = await fed.wait(created.round_id)
        assert result.state is RoundState.CLOSED, result.coverage
        assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED] * 3
        print(result.measures[0].estimates[:20])
