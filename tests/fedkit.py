"""Building blocks for federation tests: an aggregator home with tokens, and an in-process
federation (the real aggregator app and real node apps, wired by httpx.ASGITransport).

The federation runs on one ManualClock: protocol time (round and phase deadlines, task
deadlines, approval windows) stands still until a test moves it, with ``Federation.expire``
once every live party has done what it can. No test waits for a real deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, select

from aggregator.app import create_app as create_aggregator
from aggregator.home import init_home as init_aggregator_home
from aggregator.services.tokens import Role, create_token
from aggregator.settings import ENV_FILE as AGG_ENV
from aggregator.settings import AggregatorSettings
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from aggregator.storage.models import Round, Task
from node.app import create_app as create_node
from node.identity import load_signing_key
from node.link import load_link
from node.services.answering import Answered
from node.services.joining import join
from node.settings import NodeSettings
from node.storage.db import make_engine, make_sessionmaker
from protocol.catalogue import CATALOGUE_VERSION
from protocol.clock import ManualClock
from protocol.http import PROBLEM_JSON, PROBLEM_TYPE_BASE
from protocol.messages import (
    POLL,
    REFUSAL,
    BudgetStatus,
    NodeReport,
    Phase,
    PolicySummary,
    Poll,
    QueryRequest,
    Refusal,
    RefusalReason,
)
from protocol.results import NodeStatus, RoundResult, RoundState
from protocol.signing import SigningKey, sign
from tests.factories import Row, write_rows
from tests.nodekit import make_node, open_answerer

AGG_URL = "http://aggregator.test"


def make_aggregator(
    home: Path, db_url: str | None = None, **settings: object
) -> AggregatorSettings:
    init_aggregator_home(home, "Testaggregator", db_url)
    if settings:
        with (home / AGG_ENV).open("a", encoding="utf-8") as handle:
            for name, value in settings.items():
                text = str(value).lower() if isinstance(value, bool) else str(value)
                handle.write(f"PUBLIEKSDATA_AGGREGATOR_{name.upper()}={text}\n")
    return AggregatorSettings.load(home)


async def make_token(settings: AggregatorSettings, role: Role, name: str = "tester") -> str:
    engine = make_async_engine(settings.database_url)
    try:
        async with make_async_sessionmaker(engine)() as session, session.begin():
            token, _ = await create_token(session, name, role)
    finally:
        await engine.dispose()
    return token


class RoutingTransport(httpx.AsyncBaseTransport):
    """Sends requests for AGG_URL to the aggregator app; ``hook`` may replace a response."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app, raise_app_exceptions=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)


@dataclass
class Federation:
    settings: AggregatorSettings
    app: FastAPI
    client: httpx.AsyncClient  # to the aggregator, no token
    admin: str
    analyst: str
    clock: ManualClock
    nodes: list[NodeSettings] = field(default_factory=list)
    node_apps: list[FastAPI] = field(default_factory=list)
    running: set[str] = field(default_factory=set)  # node ids whose apps run (connected out)

    def as_(self, token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    async def invite(self, institution: str) -> str:
        response = await self.client.post(
            "/v1/admin/invites", json={"institution": institution}, headers=self.as_(self.admin)
        )
        assert response.status_code == 201, response.text
        code: str = response.json()["code"]
        return code

    async def ask(self, **body: Any) -> RoundResult:
        response = await self.client.post("/v1/rounds", json=body, headers=self.as_(self.analyst))
        assert response.status_code == 201, response.text
        return RoundResult.model_validate(response.json())

    async def wait(self, round_id: str, timeout: float = 120) -> RoundResult:
        """The round once closed; ``timeout`` (real seconds) only guards a hanging test."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while True:
            response = await self.client.get(
                f"/v1/rounds/{round_id}", params={"wait": 5}, headers=self.as_(self.analyst)
            )
            assert response.status_code == 200, response.text
            result = RoundResult.model_validate(response.json())
            if result.state is RoundState.CLOSED or loop.time() > until:
                return result

    async def expire(
        self,
        round_id: str | None = None,
        *,
        phase: Phase | None = None,
        silent: int = 0,
        timeout: float = 60,
    ) -> str:
        """Move protocol time to the deadline of the round's current phase (or of the round)
        once it is ``settled`` (see there); returns the round's id."""
        row = await self.settled(round_id, phase=phase, silent=silent, timeout=timeout)
        self.clock.advance_to(row.phase_deadline or row.deadline)
        return row.id

    async def settled(
        self,
        round_id: str | None = None,
        *,
        phase: Phase | None = None,
        silent: int = 0,
        timeout: float = 60,
    ) -> Round:
        """The open round once every live party has done what it can in its current phase: all
        its tasks are settled except ``silent`` ones (nodes that are down, slow or dropping out),
        and each of those that belongs to a running node has been handed to it. With ``phase``,
        also wait until the secure round is in that phase. Without ``round_id``: the only open
        round, once there is one. ``timeout`` (real seconds) only guards against a hanging test;
        the condition is observed in the aggregator's database, never guessed from time."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        seen = "no open round"
        while loop.time() < until:
            found = await self._phase_state(round_id)
            if found is not None:
                row, waiting = found
                round_id = row.id
                seen = f"round {row.state}, phase {row.phase}, {len(waiting)} task(s) open"
                if row.state != RoundState.OPEN.value:
                    raise AssertionError(f"round {row.id} closed before its deadline")
                if (
                    (phase is None or row.phase == phase.value)
                    and len(waiting) == silent
                    and all(
                        t.delivered_at is not None for t in waiting if t.node_id in self.running
                    )
                ):
                    return row
            await asyncio.sleep(0.02)
        raise AssertionError(f"the round never settled to {silent} silent task(s): {seen}")

    async def waits_longer(self, round_id: str, timeout: float = 60) -> Round:
        """The open round once its phase has been given a later deadline than the clock's time
        (too few nodes answered by the phase's deadline, so the phase waits for the slow ones).
        Observed in the aggregator's database; ``timeout`` (real seconds) only guards a hang."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while loop.time() < until:
            found = await self._phase_state(round_id)
            assert found is not None
            row = found[0]
            if row.state != RoundState.OPEN.value:
                raise AssertionError(f"round {row.id} closed instead of waiting longer")
            if row.phase_deadline is not None and row.phase_deadline > self.clock.now():
                return row
            await asyncio.sleep(0.02)
        raise AssertionError(f"round {round_id} never got a later phase deadline")

    async def _phase_state(self, round_id: str | None) -> tuple[Round, list[Task]] | None:
        """A round and its open tasks of the current phase, read from the aggregator's database."""
        factory = self.app.state.aggregator.factory
        async with factory() as session:
            if round_id is None:
                rows = list(
                    await session.scalars(select(Round).where(Round.state == RoundState.OPEN.value))
                )
                if len(rows) != 1:
                    return None
                row: Round | None = rows[0]
            else:
                row = await session.get(Round, round_id)
            if row is None:
                return None
            waiting = await session.scalars(
                select(Task).where(
                    Task.round_id == row.id,
                    Task.status == NodeStatus.PENDING.value,
                    Task.phase.is_not(None),
                )
            )
            return row, list(waiting)


async def answered_round(fed: Federation, rho: float = 0.05, timeout: float = 30) -> None:
    """Ask the 'volume' report of 2025 in independent mode; the first node must answer it."""
    created = await fed.ask(
        report={"name": "volume", "year": 2025, "rho": rho, "mode": "independent"},
        deadline_seconds=int(timeout),
    )
    result = await fed.wait(created.round_id, timeout=timeout)
    assert result.coverage.nodes[0].status is NodeStatus.ANSWERED, result.coverage


async def join_node(fed: Federation, settings: NodeSettings) -> None:
    engine = make_engine(settings.database_url)
    try:
        await join(
            settings,
            make_sessionmaker(engine),
            load_signing_key(settings.signing_key_path),
            AGG_URL,
            await fed.invite(settings.institution),
            fed.client,
        )
    finally:
        engine.dispose()


def node_with_rows(
    tmp: Path,
    name: str,
    rows: list[Row],
    *,
    db_url: str | None = None,
    ref_offset: int = 0,
    **settings: Any,
) -> tuple[NodeSettings, Engine]:
    tmp.mkdir(parents=True, exist_ok=True)
    # In-process federations reach http://aggregator.test through ASGI: no network, no TLS.
    settings.setdefault("insecure_http", True)
    node_settings, _ = make_node(
        tmp, db_url or f"sqlite:///{tmp / 'node.db'}", institution=name, **settings
    )
    engine = make_engine(node_settings.database_url)
    write_rows(engine, rows, ref_offset=ref_offset)
    return node_settings, engine


@asynccontextmanager
async def federation(
    tmp_path: Path,
    node_rows: list[list[Row]],
    *,
    agg_db_url: str | None = None,
    agg_settings: dict[str, object] | None = None,
    node_settings: dict[str, Any] | None = None,
    start_nodes: Callable[[int], bool] = lambda _i: True,
) -> AsyncIterator[Federation]:
    """An aggregator and one node per entry of ``node_rows``, enrolled through the invite flow,
    each node app running (and so connected out) when ``start_nodes(i)`` is true."""
    # Small test federations: allow rounds of one or two nodes unless a test says otherwise.
    agg = {"min_quorum": 1, **(agg_settings or {})}
    settings = make_aggregator(tmp_path / "aggregator", agg_db_url, **agg)
    admin = await make_token(settings, Role.ADMIN, "admin")
    analyst = await make_token(settings, Role.ANALYST, "analist")
    clock = ManualClock()
    app = create_aggregator(settings, clock=clock)
    engines: list[Engine] = []
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=RoutingTransport(app), base_url=AGG_URL)
        )
        fed = Federation(settings, app, client, admin, analyst, clock)
        offset = 0
        for i, rows in enumerate(node_rows):
            node, engine = node_with_rows(
                tmp_path / f"node{i}",
                f"Instelling {i}",
                rows,
                ref_offset=offset,
                **(node_settings or {}),
            )
            offset += len(rows)
            engines.append(engine)
            await join_node(fed, node)
            fed.nodes.append(node)
            node_app = create_node(node, aggregator_client=client, clock=clock)
            fed.node_apps.append(node_app)
            if start_nodes(i):
                link = load_link(node.home)
                assert link is not None
                fed.running.add(link.node_id)
                await stack.enter_async_context(node_app.router.lifespan_context(node_app))
        try:
            yield fed
        finally:
            for engine in engines:
                engine.dispose()


# -- nodes driven by hand (for tests of misbehaving nodes) ---------------------------------------


def node_report(
    institution: str = "Instelling", *, cap_rho: float = 1.0, spent_rho: float = 0.0
) -> NodeReport:
    """A node's signed-poll report with a generous policy and the given budget."""
    return NodeReport(
        institution=institution,
        catalogue_version=CATALOGUE_VERSION,
        budget=BudgetStatus(period="2025", cap_rho=cap_rho, spent_rho=spent_rho),
        policy=PolicySummary(max_cells=20_000, max_rho_per_query=1.0),
    )


def poll_body(
    fed: Federation,
    key: SigningKey,
    *,
    report: NodeReport | None = None,
    wait: float = 0.0,
    in_flight: tuple[str, ...] = (),
) -> bytes:
    """A 'poll' envelope signed by ``key``, as a node's connector sends it."""
    message = Poll(
        aggregator_key_id=fed.app.state.aggregator.key.key_id,
        report=report or node_report(),
        wait_seconds=wait,
        in_flight=in_flight,
    )
    return sign(POLL, message.model_dump(mode="json"), key).model_dump_json().encode("utf-8")


@dataclass
class HandNode:
    """An enrolled node whose app does not run: the test signs its polls and posts its results."""

    fed: Federation
    settings: NodeSettings
    key: SigningKey
    node_id: str

    async def poll(self, body: bytes | None = None, **options: Any) -> httpx.Response:
        return await self.fed.client.post(
            "/v1/node/poll",
            content=body if body is not None else poll_body(self.fed, self.key, **options),
            headers={"content-type": "application/json"},
        )

    async def tasks(self, **options: Any) -> list[dict[str, Any]]:
        """Poll once (without waiting) and return the task envelopes as JSON documents."""
        response = await self.poll(**options)
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks

    def answer(self, task: dict[str, Any]) -> bytes:
        """This node's real signed answer to a task (through its own Answerer and ledger)."""
        request = QueryRequest.model_validate(task["payload"]["request"])
        with open_answerer(self.settings) as answerer:
            outcome = answerer.answer(request, task["key_id"])
        assert isinstance(outcome, Answered), outcome
        return outcome.body

    def refusal(self, task: dict[str, Any], reason: RefusalReason, message: str) -> bytes:
        query_id = task["payload"]["request"]["spec"]["query_id"]
        refusal = Refusal(query_id=query_id, reason=reason, message=message)
        envelope = sign(REFUSAL, refusal.model_dump(mode="json"), self.key)
        return envelope.model_dump_json().encode("utf-8")

    async def post(self, task_id: str, body: bytes) -> httpx.Response:
        return await self.fed.client.post(
            f"/v1/node/tasks/{task_id}/result",
            content=body,
            headers={"content-type": "application/json"},
        )


def hand_node(fed: Federation, i: int) -> HandNode:
    """Node ``i`` of the federation (enrolled, its app not started) as a HandNode."""
    settings = fed.nodes[i]
    link = load_link(settings.home)
    assert link is not None
    return HandNode(fed, settings, load_signing_key(settings.signing_key_path), link.node_id)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status and catalogue code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == PROBLEM_TYPE_BASE + code
    assert body["title"]
    return body
