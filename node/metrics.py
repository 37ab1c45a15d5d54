"""The node's Prometheus metrics (GET /metrics), read from its database at scrape time."""

from __future__ import annotations

from sqlalchemy import func, select

from node.deps import NodeState
from node.services import audit, ledger
from node.services.approvals import WAITING
from node.storage.models import Admission, AuditEvent, LedgerEntry, PendingApproval
from protocol.observability import Snapshot

PREFIX = "publieksdata_node"


def snapshot(state: NodeState) -> Snapshot:
    snap = Snapshot()
    period = state.answerer.budget_period()
    with state.reader() as session:
        spent = ledger.spent_units(session, period) / ledger.UNITS_PER_RHO
        answers = dict(
            session.execute(select(LedgerEntry.mode, func.count()).group_by(LedgerEntry.mode)).all()
        )
        kinds = dict(
            session.execute(
                select(AuditEvent.kind, func.count())
                .where(
                    AuditEvent.kind.in_(
                        (audit.REFUSAL, audit.REJECTED_TASK, audit.LOGIN_FAILED, audit.IMPORT)
                    )
                )
                .group_by(AuditEvent.kind)
            ).all()
        )
        waiting = session.scalar(
            select(func.count())
            .select_from(PendingApproval)
            .where(PendingApproval.status == WAITING)
        )
        admissions = session.scalar(select(func.count()).select_from(Admission))
        events = audit.head(session)[0]
    snap.counter(
        f"{PREFIX}_answers",
        "Answers released (each debited from the budget), by mode.",
        {(mode,): float(n) for mode, n in answers.items()} or {("independent",): 0.0},
        ("mode",),
    )
    snap.counter(f"{PREFIX}_refusals", "Queries refused.", {(): float(kinds.get(audit.REFUSAL, 0))})
    snap.counter(
        f"{PREFIX}_rejected_tasks",
        "Tasks rejected for a bad signature or address.",
        {(): float(kinds.get(audit.REJECTED_TASK, 0))},
    )
    snap.counter(
        f"{PREFIX}_login_failures",
        "Failed admin logins.",
        {(): float(kinds.get(audit.LOGIN_FAILED, 0))},
    )
    snap.counter(
        f"{PREFIX}_imports", "Imports that changed data.", {(): float(kinds.get(audit.IMPORT, 0))}
    )
    snap.gauge(
        f"{PREFIX}_budget_spent_rho",
        "Budget spent in the current period (zCDP ρ).",
        {(period,): spent},
        ("period",),
    )
    snap.gauge(
        f"{PREFIX}_budget_cap_rho",
        "Budget cap per period (zCDP ρ).",
        {(period,): state.settings.budget_rho},
        ("period",),
    )
    snap.gauge(
        f"{PREFIX}_awaiting_approval",
        "Queries waiting for the operator.",
        {(): float(waiting or 0)},
    )
    snap.gauge(f"{PREFIX}_admissions", "Admissions held.", {(): float(admissions or 0)})
    snap.gauge(f"{PREFIX}_audit_events", "Events in the audit log.", {(): float(events)})
    connector = state.connector
    snap.gauge(
        f"{PREFIX}_aggregator_connected",
        "1 while the node's long poll to its aggregator works.",
        {(): 1.0 if connector is not None and connector.status.connected else 0.0},
    )
    return snap
