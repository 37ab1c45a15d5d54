"""Simulated nodes for the round benchmark: the real wire protocol, none of the data work.

A :class:`SimNode` holds a long-poll open like ``node.connector.Connector``: it signs a 'poll'
envelope, re-polls at once after each response (listing the tasks it is answering as
``in_flight``), checks each task's signature, freshness and addressee, and posts a signed 'answer'
envelope whose ``QueryAnswer`` has the task's cells and measures. It skips the database and
OpenDP: the measure values for a query shape are computed once (:class:`Answers`) and reused.

Each node records, per task, when its handler started (the task was received) and when its
answer was signed and ready to post; the difference is the node's own answer time. Nodes are
enrolled by the aggregator's own services (an invite created and redeemed per node) in its
database, before the aggregator starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aggregator.services import enrolment
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from node.connector import Backoff
from protocol import catalogue
from protocol.messages import (
    ANSWER,
    POLL,
    TASK,
    BudgetStatus,
    JoinRequest,
    MeasureResult,
    NodeReport,
    PolicySummary,
    Poll,
    PrivacySpent,
    QueryAnswer,
    Task,
)
from protocol.query import QuerySpec
from protocol.signing import (
    Envelope,
    MemoryNonceStore,
    SigningKey,
    StaticKeyRing,
    Verifier,
    key_id_of,
    public_key_to_text,
    sign,
)

JSON = {"content-type": "application/json"}
BACKOFF = Backoff()  # the connector's full-jitter backoff (0.5 s base, 30 s cap)


@dataclass(frozen=True, slots=True)
class Identity:
    node_id: str
    institution: str
    key: SigningKey


async def enrol(database_url: str, count: int, prefix: str = "Sim") -> list[Identity]:
    """``count`` nodes enrolled through the aggregator's invite services (one transaction)."""
    engine = make_async_engine(database_url)
    identities = []
    try:
        async with make_async_sessionmaker(engine)() as session, session.begin():
            now = datetime.now(UTC)
            for i in range(count):
                key = SigningKey.generate()
                name = f"{prefix} {i + 1:04d}"
                code, _ = await enrolment.create_invite(
                    session, name, "round-bench", timedelta(hours=1)
                )
                join = JoinRequest(
                    invite=code, institution=name, public_key=public_key_to_text(key.public)
                )
                node = await enrolment.redeem(session, join, now)
                identities.append(Identity(node.id, name, key))
    finally:
        await engine.dispose()
    return identities


class Answers:
    """The measures of an answer, per query shape (everything in the spec but its id and title):
    noisy values and calibration computed once by the node's own release code."""

    def __init__(self) -> None:
        self._by_shape: dict[str, tuple[MeasureResult, ...]] = {}

    @staticmethod
    def _shape(spec: QuerySpec) -> str:
        return spec.model_copy(update={"query_id": "shape", "title": ""}).model_dump_json()

    def prepare(self, spec: QuerySpec) -> None:
        from node.privacy.release import release  # OpenDP: only in the benchmark process

        key = self._shape(spec)
        if key not in self._by_shape:
            exact = {m: [100 + i % 37 for i in range(spec.cell_count)] for m in spec.measures}
            self._by_shape[key] = release(spec, exact, noise=True)

    def measures(self, spec: QuerySpec) -> tuple[MeasureResult, ...]:
        key = self._shape(spec)
        if key not in self._by_shape:
            self.prepare(spec)
        return self._by_shape[key]


@dataclass
class Timing:
    """One task as its node saw it (``time.monotonic`` seconds)."""

    node_id: str
    round_id: str
    received: float  # the handler started: the poll response with the task was parsed
    ready: float  # the answer was signed; the POST starts now
    status: int = 0  # HTTP status of the POST


@dataclass
class Log:
    """What all simulated nodes of one run recorded."""

    timings: dict[str, list[Timing]] = field(default_factory=dict)  # by round id
    errors: list[str] = field(default_factory=list)
    busy: float = 0.0  # seconds the nodes spent in their own (synchronous) code
    polls: int = 0

    def add(self, timing: Timing) -> None:
        self.timings.setdefault(timing.round_id, []).append(timing)


class SimNode:
    def __init__(
        self,
        identity: Identity,
        aggregator_key: Ed25519PublicKey,
        client: httpx.AsyncClient,
        answers: Answers,
        log: Log,
        *,
        base: str = "",
        wait_seconds: float = 25.0,
    ) -> None:
        self.identity = identity
        self.key = identity.key
        self.aggregator_key_id = key_id_of(aggregator_key)
        self.verifier = Verifier(StaticKeyRing.of(aggregator_key), MemoryNonceStore())
        self.client = client
        self.answers = answers
        self.log = log
        self.base = base
        self.wait_seconds = wait_seconds
        self.budget = BudgetStatus(period="bench", cap_rho=100.0, spent_rho=0.0)
        self.policy = PolicySummary(max_cells=20_000, max_rho_per_query=0.5)
        self.in_flight: dict[str, asyncio.Task[None]] = {}

    def _poll_body(self) -> str:
        report = NodeReport(
            institution=self.identity.institution,
            catalogue_version=catalogue.CATALOGUE_VERSION,
            budget=self.budget,
            policy=self.policy,
            software="round-bench-sim/1",
        )
        message = Poll(
            aggregator_key_id=self.aggregator_key_id,
            report=report,
            wait_seconds=self.wait_seconds,
            in_flight=tuple(self.in_flight),
        )
        return sign(POLL, message.model_dump(mode="json"), self.key).model_dump_json()

    async def poll_once(self) -> None:
        started = time.perf_counter()
        body = self._poll_body()
        self.log.busy += time.perf_counter() - started
        self.log.polls += 1
        response = await self.client.post(
            f"{self.base}/v1/node/poll",
            content=body,
            headers=JSON,
            timeout=httpx.Timeout(10.0, read=self.wait_seconds + 15.0),
        )
        if response.status_code != 200:
            raise RuntimeError(f"poll: HTTP {response.status_code} {response.text[:200]}")
        for document in response.json().get("tasks", []):
            task_id = str(document.get("payload", {}).get("task_id", ""))
            if task_id and task_id not in self.in_flight:
                handler = asyncio.create_task(self.handle(document))
                self.in_flight[task_id] = handler
                handler.add_done_callback(self._forget(task_id))

    def _forget(self, task_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_handler: asyncio.Task[None]) -> None:
            self.in_flight.pop(task_id, None)

        return forget

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep polling with backoff, as the real connector does
                self.log.errors.append(f"{self.identity.node_id}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(BACKOFF.delay(attempt))
                attempt += 1
            else:
                attempt = 0

    def _answer(self, document: dict[str, Any]) -> tuple[Task, bytes]:
        envelope = Envelope.model_validate(document)
        task = Task.model_validate(self.verifier.verify(envelope, TASK))
        if envelope.key_id != self.aggregator_key_id or task.node_key_id != self.key.key_id:
            raise ValueError("the task is not for this node or not from its aggregator")
        if task.deadline <= datetime.now(UTC):
            raise ValueError("the task is past its deadline")
        spec = task.request.spec
        measures = self.answers.measures(spec)
        cost = spec.privacy.rho_charged  # debited before release, as the node's ledger does
        self.budget = self.budget.model_copy(update={"spent_rho": self.budget.spent_rho + cost})
        answer = QueryAnswer(
            query_id=spec.query_id,
            query_hash=spec.digest(),
            catalogue_version=spec.catalogue_version,
            answered_at=datetime.now(UTC),
            group_by=spec.group_by,
            cells=tuple(spec.cells()),
            measures=measures,
            privacy=PrivacySpent(rho=cost, epsilon=1.0, delta=1e-7),
            budget=self.budget,
            noise=True,
        )
        body = sign(ANSWER, answer.model_dump(mode="json"), self.key).model_dump_json()
        return task, body.encode("utf-8")

    async def handle(self, document: dict[str, Any]) -> None:
        received = time.monotonic()
        started = time.perf_counter()
        try:
            task, body = self._answer(document)
        except Exception as exc:
            self.log.errors.append(f"{self.identity.node_id}: task: {exc}")
            return
        ready = time.monotonic()
        self.log.busy += time.perf_counter() - started
        timing = Timing(self.identity.node_id, task.round_id, received, ready)
        self.log.add(timing)
        await self._deliver(task, body, timing)

    async def _deliver(self, task: Task, body: bytes, timing: Timing) -> None:
        """Post the answer; on a network error or a 5xx retry with the connector's backoff
        until the task's deadline (as ``Connector._deliver``). Each failure is logged."""
        attempt = 0
        url = f"{self.base}/v1/node/tasks/{task.task_id}/result"
        while datetime.now(UTC) < task.deadline:
            try:
                response = await self.client.post(url, content=body, headers=JSON)
            except httpx.HTTPError as exc:
                self.log.errors.append(f"{self.identity.node_id}: result: {type(exc).__name__}")
            else:
                timing.status = response.status_code
                if response.status_code < 500:
                    if response.status_code != 200:
                        self.log.errors.append(
                            f"{self.identity.node_id}: result HTTP {response.status_code}"
                        )
                    return
                self.log.errors.append(
                    f"{self.identity.node_id}: result HTTP {response.status_code}"
                )
            await asyncio.sleep(BACKOFF.delay(attempt))
            attempt += 1


@contextlib.asynccontextmanager
async def running(nodes: Iterable[SimNode]) -> Any:
    """Run the nodes' poll loops for the duration of the block."""
    tasks = [asyncio.create_task(node.run()) for node in nodes]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
