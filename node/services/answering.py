"""Answering a query: policy, idempotency, the bounded aggregate, noise, debit, sign.

The order matters. The answer is computed and signed, then the debit and the stored answer commit
in one transaction, and only then are the bytes returned. If the process dies anywhere before the
commit, nothing was released; after it, the spend is on record. A repeated query id returns the
stored bytes and spends nothing, so a retry never buys fresh noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.privacy.release import privacy_spent, release
from node.services import audit, ledger
from node.services.aggregate import run_aggregate
from node.services.policy import check_policy
from node.settings import NodeSettings
from node.storage.db import transaction
from protocol.messages import ANSWER, QueryAnswer, QueryRequest, Refusal, RefusalReason
from protocol.query import Mode
from protocol.signing import SigningKey, sign

LOCAL_OPERATOR = "local-operator"


@dataclass(frozen=True, slots=True)
class Answered:
    """The signed answer exactly as released (and as stored in the ledger)."""

    body: bytes
    replayed: bool  # True when this is the stored answer to a query id seen before


Outcome = Answered | Refusal


class Answerer:
    def __init__(
        self,
        settings: NodeSettings,
        writer: sessionmaker[Session],
        reader: sessionmaker[Session],
        key: SigningKey,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.reader = reader
        self.key = key

    def budget_period(self, now: datetime | None = None) -> str:
        return ledger.period_key(now or datetime.now(UTC), self.settings.budget_period)

    def _refuse(self, request: QueryRequest, reason: RefusalReason, message: str) -> Refusal:
        return Refusal(query_id=request.spec.query_id, reason=reason, message=message)

    def _stored(self, request: QueryRequest) -> Outcome | None:
        with self.reader() as session:
            entry = ledger.stored_answer(session, request.spec.query_id)
            if entry is None:
                return None
            if entry.query_hash != request.spec.digest():
                return self._refuse(
                    request,
                    RefusalReason.QUERY_ID_REUSED,
                    "this query id was already used for a different query; use a new id",
                )
            return Answered(body=bytes(entry.answer), replayed=True)

    def answer(self, request: QueryRequest, requester_key_id: str) -> Outcome:
        """Answer or refuse; every refusal is written to the audit log."""
        outcome = self._answer(request, requester_key_id)
        if isinstance(outcome, Refusal):
            audit.record_refusal(
                self.writer,
                query_id=outcome.query_id,
                reason=outcome.reason.value,
                message=outcome.message,
                analyst=request.analyst,
                via=requester_key_id,
                spec=request.spec,
            )
        return outcome

    def _answer(self, request: QueryRequest, requester_key_id: str) -> Outcome:
        spec = request.spec
        stored = self._stored(request)
        if stored is not None:
            return stored
        if self.settings.budget_sync_path.exists():
            return self._refuse(
                request,
                RefusalReason.BUDGET_SYNC,
                "this node was restored from a backup and answers again once its aggregator "
                "has confirmed how much budget it had spent",
            )
        if spec.mode is Mode.SECURE:  # only the secure-round protocol may answer these
            return self._refuse(
                request,
                RefusalReason.POLICY_MODE,
                "a secure query is answered only within a secure round (through the aggregator)",
            )
        refusal = check_policy(spec, self.settings)
        if refusal is not None:
            return refusal
        now = datetime.now(UTC)
        period = self.budget_period(now)
        cost = spec.privacy.rho_charged
        with self.reader() as session:
            affordable = ledger.can_afford(session, period, cost, self.settings.budget_rho)
            exact = run_aggregate(session, spec) if affordable else {}
        if not affordable:  # refuse after releasing the connection: the refusal needs one too
            return self._budget_refusal(request, "period")
        measures = release(spec, exact, noise=not self.settings.unsafe_disable_noise)
        spent = privacy_spent(spec)
        debit = ledger.Debit(
            query_id=spec.query_id,
            query_hash=spec.digest(),
            requester_key_id=requester_key_id,
            analyst=request.analyst,
            period=period,
            rho=cost,
            epsilon=spent.epsilon,
            delta=spent.delta,
            created_at=now,
        )
        try:
            with transaction(self.writer) as session:
                ledger.debit(
                    session,
                    debit,
                    cap_rho=self.settings.budget_rho,
                    analyst_cap_rho=self.settings.analyst_budget_rho,
                )
                answer = QueryAnswer(
                    query_id=spec.query_id,
                    query_hash=debit.query_hash,
                    catalogue_version=spec.catalogue_version,
                    answered_at=now,
                    group_by=spec.group_by,
                    cells=tuple(spec.cells()),
                    measures=measures,
                    privacy=spent,
                    budget=ledger.status(session, period, self.settings.budget_rho),
                    noise=not self.settings.unsafe_disable_noise,
                )
                envelope = sign(ANSWER, answer.model_dump(mode="json"), self.key, now=now)
                body = envelope.model_dump_json().encode("utf-8")
                ledger.record(session, debit, body, spec=spec, cap_rho=self.settings.budget_rho)
        except ledger.BudgetExhausted as exc:
            return self._budget_refusal(request, exc.scope)
        except IntegrityError:
            # A concurrent request with the same query id committed first: return its answer.
            stored = self._stored(request)
            if stored is None:
                raise
            return stored
        return Answered(body=body, replayed=False)

    def _budget_refusal(self, request: QueryRequest, scope: str) -> Outcome:
        # A concurrent request with the same query id may have spent the last of the budget; its
        # stored answer is the answer to this one too (design §7), not a refusal.
        stored = self._stored(request)
        if stored is not None:
            return stored
        if scope == "analyst":
            return self._refuse(
                request,
                RefusalReason.ANALYST_BUDGET_EXHAUSTED,
                "this analyst's privacy budget for the period does not cover this query",
            )
        return self._refuse(
            request,
            RefusalReason.BUDGET_EXHAUSTED,
            "the node's privacy budget for the period does not cover this query",
        )
