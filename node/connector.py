"""The node's outbound connection to its aggregator.

Nothing connects in: the node holds a long-poll open to the aggregator, which answers it as soon
as there is a task. For each task the node checks the aggregator's signature, the task's
freshness and that the task is addressed to this node, then answers it exactly as a directly
signed query (policy, budget, ledger debit before release) and posts its signed answer or
refusal back. Network failures are retried with jittered exponential backoff ("full jitter"),
so that a thousand nodes coming back after an outage do not all knock at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from anyio import to_thread
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from node.link import AggregatorLink, save_link
from node.services import approvals, audit, ledger
from node.services.answering import Answered, Answerer
from node.services.approvals import Approvals
from node.services.policy import policy_of
from node.services.secure import SecureParty
from node.services.trust import trust_key, untrust_key
from node.settings import NodeSettings
from node.storage.db import transaction
from node.transport import describe_transport_error
from protocol import catalogue
from protocol.clock import Clock, SystemClock
from protocol.http import parse_json
from protocol.messages import (
    ANSWER,
    KEY_ROTATION,
    POLL,
    REFUSAL,
    SECAGG_MASKED,
    TASK,
    BudgetStatus,
    KeyRotation,
    NodeReport,
    Phase,
    Poll,
    Refusal,
    RefusalReason,
    Task,
)
from protocol.signing import (
    Envelope,
    SignatureError,
    SigningKey,
    Verifier,
    fingerprint,
    key_id_of,
    public_key_from_text,
    sign,
    verify_once,
)

log = logging.getLogger("publieksdata.node.connector")
PROOF_TYPES = (POLL, ANSWER, SECAGG_MASKED)  # the node's own messages that state its budget
SOFTWARE = "publieksdata-node/1"
GATED = (Phase.QUERY, Phase.ANNOUNCE, Phase.KEYS)  # the phases that wait for manual approval
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: wait uniform(0, min(cap, base·2^attempt)) seconds."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return _random.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 30)))


@dataclass
class ConnectorStatus:
    connected: bool = False
    last_contact: datetime | None = None
    last_error: str | None = None
    tasks_answered: int = 0
    tasks_rejected: int = 0


@dataclass
class _Rejected:
    until: dict[str, float] = field(default_factory=dict)

    def add(self, task_id: str, seconds: float = 5.0) -> None:
        self.until[task_id] = time.monotonic() + seconds

    def active(self) -> list[str]:
        now = time.monotonic()
        self.until = {t: u for t, u in self.until.items() if u > now}
        return list(self.until)


class Connector:
    def __init__(
        self,
        settings: NodeSettings,
        link: AggregatorLink,
        key: SigningKey,
        answerer: Answerer,
        verifier: Verifier,
        budget: Callable[[], BudgetStatus],
        client: httpx.AsyncClient,
        factory: sessionmaker[Session],
        backoff: Backoff | None = None,
        approvals: Approvals | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.link = link
        self.key = key
        self.answerer = answerer
        self.verifier = verifier
        self.budget = budget
        self.client = client
        self.factory = factory
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()  # task deadlines are protocol time
        self.status = ConnectorStatus()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._rejected = _Rejected()
        self.secure = SecureParty(answerer, self.clock)
        self.approvals = approvals or Approvals(factory, answerer.reader, self.clock)
        self.awaiting: set[str] = set()  # task ids waiting for the operator's approval

    # --- polling ----------------------------------------------------------------------------

    async def _report(self) -> NodeReport:
        budget = await to_thread.run_sync(self.budget)
        return NodeReport(
            institution=self.settings.institution,
            catalogue_version=catalogue.CATALOGUE_VERSION,
            budget=budget,
            policy=policy_of(self.settings),
            software=SOFTWARE,
        )

    async def poll_once(self) -> int:
        """One long-poll. Starts a handler per new task and returns how many it started."""
        wait = self.settings.poll_wait_seconds
        message = Poll(
            aggregator_key_id=self.link.aggregator_key_id,
            report=await self._report(),
            wait_seconds=wait,
            in_flight=tuple(self._in_flight) + tuple(self._rejected.active()),
            awaiting_approval=tuple(sorted(self.awaiting)),
        )
        envelope = sign(POLL, message.model_dump(mode="json"), self.key)
        response = await self.client.post(
            f"{self.link.base}/v1/node/poll",
            content=envelope.model_dump_json(),
            headers={"content-type": "application/json"},
            timeout=httpx.Timeout(10.0, read=wait + 15.0),
        )
        if response.status_code != 200:
            raise PollRefused(response.status_code, _code(response))
        self.status.connected = True
        self.status.last_contact = datetime.now(UTC)
        self.status.last_error = None
        # The same gate as every request body: not too deep, no NaN, no number beyond 2**53 − 1.
        body = parse_json(response.content)
        if body.get("key_rotation"):
            await to_thread.run_sync(self._rotate, body["key_rotation"])
        if body.get("budget_proof"):
            await to_thread.run_sync(self._apply_budget_proof, body["budget_proof"])
        elif self.settings.budget_sync_path.exists():
            # The aggregator knows of no higher spend than the one this poll reported.
            self.settings.budget_sync_path.unlink(missing_ok=True)
            log.warning("budget confirmed by the aggregator after a restore; answering again")
        tasks = body.get("tasks", [])
        started = 0
        for document in tasks:
            task_id = str(document.get("payload", {}).get("task_id", ""))
            if task_id and task_id not in self._in_flight:
                handler = asyncio.create_task(self.handle(document))
                self._in_flight[task_id] = handler
                handler.add_done_callback(self._done(task_id))
                started += 1
        return started

    def _rotate(self, chain: list[dict[str, Any]]) -> None:
        """Follow the aggregator's key rotation: each message must be signed by the key this
        node trusts now and name the next key; the node then trusts only the new key."""
        for document in chain:
            envelope = Envelope.model_validate(document)
            current = public_key_from_text(self.link.aggregator_key)
            rotation = KeyRotation.model_validate(verify_once(envelope, KEY_ROTATION, current))
            new_key = public_key_from_text(rotation.new_key)
            if rotation.old_key_id != self.link.aggregator_key_id or (
                key_id_of(new_key) != rotation.new_key_id
            ):
                raise SignatureError("the key rotation does not continue from the trusted key")
            trust_key(self.factory, new_key, f"aggregator {self.link.base}")
            untrust_key(self.factory, rotation.old_key_id)
            self.link = self.link.model_copy(
                update={
                    "aggregator_key": rotation.new_key,
                    "aggregator_key_id": rotation.new_key_id,
                }
            )
            save_link(self.settings.home, self.link)
            with transaction(self.factory) as session:
                audit.append(
                    session,
                    audit.KEY_ROTATION,
                    old_key_id=rotation.old_key_id,
                    new_key_id=rotation.new_key_id,
                    fingerprint=fingerprint(new_key),
                )
            log.warning(
                "the aggregator rotated its key; now trusting %s (fingerprint %s)",
                rotation.new_key_id,
                fingerprint(new_key),
            )

    def _apply_budget_proof(self, document: dict[str, Any]) -> None:
        """Raise this period's spent budget to what this node itself signed before (a poll, an
        answer or a masked vector that the aggregator kept), if its ledger shows less: it was
        restored from an older backup. A proof this node did not sign is ignored."""
        try:
            envelope = Envelope.model_validate(document)
            if envelope.type not in PROOF_TYPES:
                raise SignatureError(f"a {envelope.type!r} message proves no budget")
            payload = verify_once(envelope, envelope.type, self.key.public)
            stated = payload.get("budget") or payload.get("report", {}).get("budget")
            budget = BudgetStatus.model_validate(stated)
        except (ValidationError, SignatureError, AttributeError) as exc:
            log.warning("ignored a budget proof: %s", _describe(exc))
            return
        period = self.answerer.budget_period()
        if budget.period != period:
            return
        units = round(budget.spent_rho * ledger.UNITS_PER_RHO)
        with transaction(self.factory) as session:
            before = ledger.raise_spent(session, period, units)
            if before is not None:
                audit.append(
                    session,
                    audit.BUDGET_RESTORED,
                    period=period,
                    from_rho=before / ledger.UNITS_PER_RHO,
                    to_rho=units / ledger.UNITS_PER_RHO,
                )
        if before is not None:
            log.warning(
                "the ledger showed less spent than this node signed before (restored from a "
                "backup?); raised period %s to rho=%.6f",
                period,
                units / ledger.UNITS_PER_RHO,
            )
        self.settings.budget_sync_path.unlink(missing_ok=True)

    def _done(self, task_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_handler: asyncio.Task[None]) -> None:
            self._in_flight.pop(task_id, None)

        return forget

    async def run(self) -> None:
        """Poll until cancelled, backing off (with jitter) after every failure."""
        attempt = 0
        while True:
            try:
                await self.poll_once()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.connected = False
                self.status.last_error = await _explain(exc, self.link.base)
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning(
                    "aggregator unreachable (%s); retrying in %.1f s", self.status.last_error, delay
                )
                await asyncio.sleep(delay)

    async def close(self) -> None:
        for handler in list(self._in_flight.values()):
            handler.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    # --- answering --------------------------------------------------------------------------

    def _check(self, document: dict[str, Any]) -> tuple[Envelope, Task]:
        envelope = Envelope.model_validate(document)
        payload = self.verifier.verify(envelope, TASK)
        if envelope.key_id != self.link.aggregator_key_id:
            raise SignatureError("the task is signed by a key that is not this node's aggregator")
        task = Task.model_validate(payload)
        if task.node_key_id != self.key.key_id:
            raise SignatureError("the task is addressed to another node")
        return envelope, task

    async def handle(self, document: dict[str, Any]) -> None:
        task_id = str(document.get("payload", {}).get("task_id", ""))[:80]
        try:
            envelope, task = await to_thread.run_sync(self._check, document)
        except (ValidationError, SignatureError) as exc:
            self.status.tasks_rejected += 1
            self._rejected.add(task_id)
            log.warning("rejected a task: %s", _describe(exc))
            await to_thread.run_sync(self._log_rejected, task_id, _describe(exc))
            return
        if task.deadline <= self.clock.now():
            self._rejected.add(task.task_id)
            return
        # A secure round asks for approval at ANNOUNCE; KEYS stays gated too (an aggregator
        # without ANNOUNCE starts there), and finds the approval already given.
        if task.phase in GATED and self.settings.approval == "manual":
            decision = await self._approval(task, envelope.key_id)
            if decision == approvals.EXPIRED:
                return  # undecided at the deadline: the aggregator times this node out
            if decision == approvals.DECLINED:
                refusal = Refusal(
                    query_id=task.request.spec.query_id,
                    reason=RefusalReason.DECLINED,
                    message="the institution's operator declined this query",
                )
                await to_thread.run_sync(self._log_declined, task, envelope.key_id, refusal)
                signed = sign(REFUSAL, refusal.model_dump(mode="json"), self.key)
                await self._deliver(task, signed.model_dump_json().encode("utf-8"))
                return
        if task.phase is not Phase.QUERY:
            body = await to_thread.run_sync(self.secure.handle, task, envelope.key_id)
            await self._deliver(task, body)
            return
        outcome = await to_thread.run_sync(self.answerer.answer, task.request, envelope.key_id)
        if isinstance(outcome, Answered):
            body = outcome.body
        else:
            signed = sign(REFUSAL, outcome.model_dump(mode="json"), self.key)
            body = signed.model_dump_json().encode("utf-8")
        await self._deliver(task, body)

    async def _approval(self, task: Task, requester_key_id: str) -> str:
        """The operator's decision on this task's query (waiting for it when needed). A query
        already answered (a re-sent task) needs none: its stored answer goes out again."""
        if await to_thread.run_sync(self._answered_before, task):
            return approvals.APPROVED
        status = await to_thread.run_sync(
            self.approvals.file, task.task_id, task.request, requester_key_id, task.deadline
        )
        if status != approvals.WAITING:
            return status
        self.awaiting.add(task.task_id)
        try:
            return await self.approvals.wait(task.request.spec.query_id, task.deadline)
        finally:
            self.awaiting.discard(task.task_id)

    def _answered_before(self, task: Task) -> bool:
        with self.answerer.reader() as session:
            return ledger.stored_answer(session, task.request.spec.query_id) is not None

    def _log_rejected(self, task_id: str, reason: str) -> None:
        with transaction(self.factory) as session:
            audit.append(session, audit.REJECTED_TASK, task_id=task_id, reason=reason)

    def _log_declined(self, task: Task, requester_key_id: str, refusal: Refusal) -> None:
        audit.record_refusal(
            self.factory,
            query_id=refusal.query_id,
            reason=refusal.reason.value,
            message=refusal.message,
            analyst=task.request.analyst,
            via=requester_key_id,
            spec=task.request.spec,
            phase=task.phase.value if task.phase is not None else None,
        )

    async def _deliver(self, task: Task, body: bytes) -> None:
        attempt = 0
        url = f"{self.link.base}/v1/node/tasks/{task.task_id}/result"
        while self.clock.now() < task.deadline:
            try:
                response = await self.client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError as exc:
                reason = await _explain(exc, self.link.base)
                log.warning("could not deliver an answer (%s); retrying", reason)
            else:
                if response.status_code < 500:
                    if response.status_code == 200:
                        self.status.tasks_answered += 1
                    else:
                        log.warning("the aggregator did not take an answer: %s", _code(response))
                        self._rejected.add(task.task_id)
                    return
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1


class PollRefused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", response.status_code))
    except ValueError:
        return str(response.status_code)


def _describe(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


async def _explain(exc: BaseException, base: str) -> str:
    """Why talking to the aggregator failed: for a network error, what is likely wrong."""
    if isinstance(exc, httpx.HTTPError):
        return await describe_transport_error(exc, base)
    return _describe(exc)
