"""The aggregator replaces its signing key; connected nodes follow by themselves."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import httpx
import pytest

from aggregator.app import create_app
from aggregator.home import load_signing_key, rotate_signing_key
from node.link import load_link
from node.services.trust import trusted_keys
from node.storage.db import make_engine, make_sessionmaker
from protocol.results import NodeStatus, RoundState
from tests.factories import Row
from tests.fedkit import RoutingTransport, federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_nodes_follow_a_key_rotation_and_answer_tasks_signed_by_the_new_key(
    tmp_path: Path,
) -> None:
    rows = [[Row(person=p, event_date=date(2025, 4, p)) for p in range(1, 6)]]
    async with federation(tmp_path, rows, node_settings={"poll_wait_seconds": 0.5}) as fed:
        old = load_signing_key(fed.settings.signing_key_path)
        _, new = rotate_signing_key(fed.settings)
        assert new.key_id != old.key_id
        restarted = create_app(
            fed.settings, clock=fed.clock
        )  # the aggregator restarts with the new key
        async with restarted.router.lifespan_context(restarted):
            transport = fed.client._transport
            assert isinstance(transport, RoutingTransport)
            transport.inner = httpx.ASGITransport(restarted, raise_app_exceptions=False)
            await asyncio.sleep(1)  # the old app's last long-poll (0.5 s) has ended
            health = (await fed.client.get("/v1/health")).json()
            assert health["key_id"] == new.key_id

            created = await fed.ask(
                report={"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"}
            )
            result = await fed.wait(created.round_id)

        assert result.state is RoundState.CLOSED
        assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED]
        node = fed.nodes[0]
        link = load_link(node.home)
        assert link is not None and link.aggregator_key_id == new.key_id
        engine = make_engine(node.database_url)
        try:
            trusted = {k.key_id for k in trusted_keys(make_sessionmaker(engine))}
        finally:
            engine.dispose()
        assert new.key_id in trusted and old.key_id not in trusted


async def test_a_node_trusting_an_unknown_aggregator_key_is_told_to_rejoin(
    tmp_path: Path,
) -> None:
    rows = [[Row(person=1, event_date=date(2025, 4, 1))]]
    async with federation(tmp_path, rows, start_nodes=lambda _i: False) as fed:
        from node.connector import PollRefused

        node_app = fed.node_apps[0]
        async with node_app.router.lifespan_context(node_app):
            connector = node_app.state.node.connector
            assert connector is not None
            connector.link = connector.link.model_copy(update={"aggregator_key_id": "0" * 16})
            with pytest.raises(PollRefused) as refused:
                await connector.poll_once()
        assert refused.value.code == "invalid_request"
