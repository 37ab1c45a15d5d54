"""The node's outbound connection: jittered backoff, and recovery after the aggregator was
unreachable."""

from __future__ import annotations

import asyncio
import socket
from datetime import date
from pathlib import Path

import httpx
import pytest

from node.app import create_app
from node.connector import Backoff
from node.link import load_link, save_link
from node.transport import aggregator_client
from protocol.results import NodeStatus, RoundState
from tests.factories import Row
from tests.fedkit import RoutingTransport, federation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_backoff_is_full_jitter_below_a_growing_capped_bound() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    for attempt in range(12):
        bound = min(30.0, 0.5 * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(400)]
        assert all(0 <= d <= bound for d in delays)
        # Spread over the whole range, not bunched: P(all 400 below bound/2) = 2^-400.
        assert max(delays) > bound / 2 and min(delays) < bound / 2
    assert backoff.delay(10_000) <= 30.0  # no overflow for very long outages


class Flaky(httpx.AsyncBaseTransport):
    """Refuses the first ``failures`` polls as if the aggregator were down."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/node/poll" and self.refused < self.failures:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_node_reconnects_after_the_aggregator_was_unreachable(tmp_path: Path) -> None:
    rows = [[Row(person=p, event_date=date(2025, 6, p)) for p in range(1, 5)]]
    async with federation(tmp_path, rows, start_nodes=lambda _i: False) as fed:
        transport = fed.client._transport
        assert isinstance(transport, RoutingTransport)
        flaky = Flaky(transport, failures=3)
        async with httpx.AsyncClient(transport=flaky, base_url="http://aggregator.test") as client:
            app = create_app(fed.nodes[0], aggregator_client=client, clock=fed.clock)
            async with app.router.lifespan_context(app):
                created = await fed.ask(
                    report={"name": "volume", "year": 2025, "rho": 0.05, "mode": "independent"}
                )
                result = await fed.wait(created.round_id)
                status = app.state.node.connector.status
        assert flaky.refused == 3
        assert result.state is RoundState.CLOSED
        assert [n.status for n in result.coverage.nodes] == [NodeStatus.ANSWERED]
        assert status.connected and status.tasks_answered == 1


async def test_a_node_that_cannot_reach_its_aggregator_says_why(tmp_path: Path) -> None:
    rows = [[Row(person=1, event_date=date(2025, 6, 1))]]
    async with federation(tmp_path, rows, start_nodes=lambda _i: False) as fed:
        settings = fed.nodes[0]
        with socket.create_server(("127.0.0.1", 0)) as sock:
            port = sock.getsockname()[1]  # closed again below: nothing listens there
        link = load_link(settings.home)
        assert link is not None
        save_link(settings.home, link.model_copy(update={"url": f"http://127.0.0.1:{port}"}))
        async with aggregator_client(settings) as client:
            app = create_app(settings, aggregator_client=client)
            async with app.router.lifespan_context(app):
                status = app.state.node.connector.status
                for _ in range(500):  # the first poll fails at once; wait for it, not for time
                    if status.last_error is not None:
                        break
                    await asyncio.sleep(0.01)
    assert not status.connected
    assert status.last_error == (
        f"connection refused by 127.0.0.1:{port}: nothing listens there (is the aggregator "
        "running, and is the port right?)"
    )
