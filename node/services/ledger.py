"""The budget ledger (design §7): durable, concurrent-safe, and the authority on what was spent.

Amounts are integer nano-units of ρ (1 unit = 10⁻⁹ ρ); a query's cost is rounded *up*, so integer
arithmetic never lets rounding overspend. A debit is one conditional UPDATE::

    UPDATE budget_period SET spent = spent + :u WHERE period = :p AND spent + :u <= :cap

which the database applies atomically (a row lock on PostgreSQL, the write lock that BEGIN IMMEDIATE
takes on SQLite), so concurrent queries can never together exceed the cap. The debit, the ledger
entry and the stored answer commit in one transaction, before the answer leaves the node.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from node.services import audit
from node.storage.models import AnalystBudget, BudgetPeriod, LedgerEntry
from protocol.messages import BudgetStatus
from protocol.query import QuerySpec

UNITS_PER_RHO = 1_000_000_000


def to_units(rho: float) -> int:
    """ρ in integer units, rounded up (charges) — never less than the real cost."""
    return math.ceil(rho * UNITS_PER_RHO - 1e-6)


def cap_units(rho: float) -> int:
    """A cap in integer units, rounded down."""
    return math.floor(rho * UNITS_PER_RHO + 1e-6)


def period_key(moment: datetime, kind: str) -> str:
    if kind == "year":
        return f"{moment.year:04d}"
    if kind == "quarter":
        return f"{moment.year:04d}-Q{(moment.month + 2) // 3}"
    if kind == "month":
        return f"{moment.year:04d}-{moment.month:02d}"
    raise ValueError(f"unknown budget period kind {kind!r}")


class BudgetExhausted(Exception):
    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope  # "period" or "analyst"


class QueryIdTaken(Exception):
    """A ledger entry for this query id exists already (a concurrent duplicate won)."""


@dataclass(frozen=True, slots=True)
class Debit:
    query_id: str
    query_hash: str
    requester_key_id: str
    analyst: str
    period: str
    rho: float
    epsilon: float
    delta: float
    created_at: datetime
    mode: str = "independent"
    threshold: int | None = None
    rho_worst: float | None = None


def _insert_ignore(
    session: Session, model: type[BudgetPeriod] | type[AnalystBudget], **values: object
) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(model).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(model).values(**values).on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database dialect {dialect!r}")


def spent_units(session: Session, period: str) -> int:
    value = session.scalar(select(BudgetPeriod.spent_units).where(BudgetPeriod.period == period))
    return int(value or 0)


def status(session: Session, period: str, cap_rho: float) -> BudgetStatus:
    return BudgetStatus(
        period=period, cap_rho=cap_rho, spent_rho=spent_units(session, period) / UNITS_PER_RHO
    )


def can_afford(session: Session, period: str, rho: float, cap_rho: float) -> bool:
    """An early, non-binding check; ``debit`` is the one that counts."""
    return spent_units(session, period) + to_units(rho) <= cap_units(cap_rho)


def debit(
    session: Session,
    entry: Debit,
    *,
    cap_rho: float,
    analyst_cap_rho: float | None,
) -> None:
    """Charge ``entry.rho`` to the period (and analyst), inside the caller's transaction.

    Raises BudgetExhausted, leaving the transaction to be rolled back by the caller.
    """
    units = to_units(entry.rho)
    _insert_ignore(session, BudgetPeriod, period=entry.period, spent_units=0)
    result = session.execute(
        update(BudgetPeriod)
        .where(BudgetPeriod.period == entry.period)
        .where(BudgetPeriod.spent_units + units <= cap_units(cap_rho))
        .values(spent_units=BudgetPeriod.spent_units + units)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise BudgetExhausted("period")
    if analyst_cap_rho is not None:
        _insert_ignore(
            session, AnalystBudget, period=entry.period, analyst=entry.analyst, spent_units=0
        )
        result = session.execute(
            update(AnalystBudget)
            .where(AnalystBudget.period == entry.period, AnalystBudget.analyst == entry.analyst)
            .where(AnalystBudget.spent_units + units <= cap_units(analyst_cap_rho))
            .values(spent_units=AnalystBudget.spent_units + units)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise BudgetExhausted("analyst")


def raise_spent(session: Session, period: str, units: int) -> int | None:
    """Raise the period's spent budget to ``units`` if it is lower (a node restored from an old
    backup learning what it had spent). Returns the previous amount when it was raised."""
    _insert_ignore(session, BudgetPeriod, period=period, spent_units=0)
    before = spent_units(session, period)
    if before >= units:
        return None
    session.execute(
        update(BudgetPeriod)
        .where(BudgetPeriod.period == period, BudgetPeriod.spent_units < units)
        .values(spent_units=units)
        .execution_options(synchronize_session=False)
    )
    return before


def record(
    session: Session,
    entry: Debit,
    answer: bytes,
    *,
    spec: QuerySpec | None = None,
    cap_rho: float | None = None,
) -> None:
    """Store the released answer with its debit, and its audit event (same transaction as
    ``debit``, so nothing leaves the node that is not on record)."""
    digest = hashlib.sha256(answer).hexdigest()
    session.add(
        LedgerEntry(
            query_id=entry.query_id,
            query_hash=entry.query_hash,
            requester_key_id=entry.requester_key_id,
            analyst=entry.analyst,
            period=entry.period,
            rho_units=to_units(entry.rho),
            rho=entry.rho,
            epsilon=entry.epsilon,
            delta=entry.delta,
            created_at=entry.created_at,
            answer=answer,
            answer_sha256=digest,
            mode=entry.mode,
            threshold=entry.threshold,
            rho_worst=entry.rho_worst,
        )
    )
    session.flush()
    audit.append(
        session,
        audit.ANSWER,
        at=entry.created_at,
        query_id=entry.query_id,
        analyst=entry.analyst,
        via=entry.requester_key_id,
        mode=entry.mode,
        threshold=entry.threshold,
        rho=entry.rho,
        rho_worst=entry.rho_worst,
        epsilon=entry.epsilon,
        delta=entry.delta,
        period=entry.period,
        cap_rho=cap_rho,
        query=query_summary(spec) if spec is not None else None,
        answer_sha256=digest,
    )


def query_summary(spec: QuerySpec) -> dict[str, object]:
    """What the audit log keeps of a query: enough to describe it in plain language."""
    return {
        "title": spec.title,
        "period": [spec.period.start.isoformat(), spec.period.end.isoformat()],
        "measures": [m.value for m in spec.measures],
        "group_by": list(spec.group_by),
        "filters": {k: list(v) for k, v in spec.filters.items()},
        "cells": spec.cell_count,
        "mode": spec.mode.value,
    }


def stored_answer(session: Session, query_id: str) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.query_id == query_id))
