"""Manual approval (policy ``approval = manual``): each query waits for the operator.

The connector files the query here and waits; the admin pages (or another process: the wait
also re-reads the database every second) approve or decline it. The decision, and a query that
expires undecided at its deadline, are written to the audit log. The aggregator learns that the
node is waiting through the ``awaiting_approval`` list of the node's next poll, and shows it in
the round's coverage. An approved query is answered exactly as in ``auto`` mode (policy, budget,
debit before release); an approval is for one query id, so a re-sent task does not wait again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.services import audit
from node.services.ledger import query_summary
from node.storage.db import transaction
from node.storage.models import PendingApproval
from protocol.clock import Clock, SystemClock
from protocol.messages import QueryRequest

WAITING = "waiting"
APPROVED = "approved"
DECLINED = "declined"
EXPIRED = "expired"
RECHECK_SECONDS = 1.0


class DecisionError(ValueError):
    """The query is not waiting (decided already, expired, or unknown)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    query_id: str
    request: QueryRequest
    requester_key_id: str
    received_at: datetime
    deadline: datetime
    status: str


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _waiting(row: PendingApproval) -> Waiting:
    return Waiting(
        query_id=row.id,
        request=QueryRequest.model_validate_json(row.request),
        requester_key_id=row.requester_key_id,
        received_at=_aware(row.received_at),
        deadline=_aware(row.deadline),
        status=row.status,
    )


class Approvals:
    def __init__(
        self,
        writer: sessionmaker[Session],
        reader: sessionmaker[Session],
        clock: Clock | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.clock = clock or SystemClock()  # the task deadline is protocol time
        self._wake: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the connector's side ------------------------------------------------------------------

    def file(
        self, task_id: str, request: QueryRequest, requester_key_id: str, deadline: datetime
    ) -> str:
        """File a query (once per query id) and return its status."""
        query_id = request.spec.query_id
        with self.reader() as session:
            row = session.get(PendingApproval, query_id)
            if row is not None:
                return row.status
        now = self.clock.now()
        try:
            with transaction(self.writer) as session:
                session.add(
                    PendingApproval(
                        id=query_id,
                        task_id=task_id[:120],
                        request=request.model_dump_json(),
                        requester_key_id=requester_key_id,
                        analyst=request.analyst,
                        received_at=now,
                        deadline=deadline,
                        status=WAITING,
                    )
                )
                session.flush()
                audit.append(
                    session,
                    audit.APPROVAL_WAITING,
                    at=now,
                    query_id=query_id,
                    analyst=request.analyst,
                    via=requester_key_id,
                    rho=request.spec.privacy.rho_charged,
                    deadline=deadline.isoformat(),
                    query=query_summary(request.spec),
                )
        except IntegrityError:
            pass  # filed concurrently by a re-sent task
        return self.status(query_id) or WAITING

    def status(self, query_id: str) -> str | None:
        with self.reader() as session:
            row = session.get(PendingApproval, query_id)
            return row.status if row is not None else None

    async def wait(self, query_id: str, deadline: datetime) -> str:
        """Wait for the decision until the deadline; then the query expires."""
        self._loop = asyncio.get_running_loop()
        event = self._wake.setdefault(query_id, asyncio.Event())
        expiry = asyncio.ensure_future(self.clock.sleep_until(deadline))
        try:
            while True:
                status = await to_thread.run_sync(self.status, query_id)
                if status != WAITING:
                    return status or EXPIRED
                if self.clock.now() >= deadline:
                    return await to_thread.run_sync(self._expire, query_id)
                event.clear()
                woken = asyncio.ensure_future(event.wait())
                # Re-read now and then: another process (the CLI) may decide too.
                await asyncio.wait(
                    {woken, expiry}, timeout=RECHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
        finally:
            expiry.cancel()
            self._wake.pop(query_id, None)

    def _expire(self, query_id: str) -> str:
        with transaction(self.writer) as session:
            row = session.get(PendingApproval, query_id, with_for_update=True)
            if row is None or row.status != WAITING:
                return row.status if row is not None else EXPIRED
            row.status = EXPIRED
            row.decided_at = self.clock.now()
            audit.append(session, audit.APPROVAL_EXPIRED, query_id=query_id, analyst=row.analyst)
            return EXPIRED

    # --- the operator's side -------------------------------------------------------------------

    def waiting(self) -> list[Waiting]:
        now = self.clock.now()
        with self.reader() as session:
            rows = session.scalars(
                select(PendingApproval)
                .where(PendingApproval.status == WAITING)
                .order_by(PendingApproval.received_at)
            ).all()
            return [w for w in map(_waiting, rows) if w.deadline > now]

    def recent(self, limit: int = 20) -> list[Waiting]:
        with self.reader() as session:
            rows = session.scalars(
                select(PendingApproval)
                .where(PendingApproval.status != WAITING)
                .order_by(PendingApproval.decided_at.desc())
                .limit(limit)
            ).all()
            return [_waiting(r) for r in rows]

    def decide(self, query_id: str, approve: bool) -> str:
        """Approve or decline a waiting query. Raises DecisionError when it is not waiting."""
        now = self.clock.now()
        with transaction(self.writer) as session:
            row = session.get(PendingApproval, query_id, with_for_update=True)
            if row is None:
                raise DecisionError("unknown")
            if row.status != WAITING:
                raise DecisionError(row.status)
            if _aware(row.deadline) <= now:
                raise DecisionError(EXPIRED)
            row.status = APPROVED if approve else DECLINED
            row.decided_at = now
            audit.append(
                session,
                audit.APPROVED if approve else audit.DECLINED,
                at=now,
                query_id=query_id,
                analyst=row.analyst,
                via=row.requester_key_id,
            )
            status = row.status
        event = self._wake.get(query_id)
        if event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(event.set)
        return status
