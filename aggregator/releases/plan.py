"""Planning a release: what publishing a recipe would ask and cost, judged before any round.

``publish`` asks for this plan before its first round, so that a publish that cannot finish
spends nothing. For each report the recipe asks it either reuses a completed round of the same
question (one given by hand, or one the aggregator finds: closed with a result, in the nodes'
current budget period) or plans a new round. For each node it adds up the ρ of the new rounds
and judges them, one after the other, against the node's last signed budget and policy, with
the same check a single round gets (``aggregator.rounds.admission.precheck``). A token whose role
may not publish is a problem too. Pure functions; the route (aggregator/api/releases.py) reads
the nodes and rounds and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator.rounds.admission import precheck
from aggregator.services import registry
from aggregator.storage.models import Node
from protocol.api import NodeCost, PlannedReport, ReleasePlan
from protocol.query import Mode, QuerySpec


@dataclass(frozen=True, slots=True)
class Question:
    """One report of the recipe: its question, and the completed round that answers it, if any."""

    report: str
    spec: QuerySpec
    reuse: str | None = None
    found: bool = False  # the aggregator found ``reuse`` (rather than the caller giving it)


def rho(value: float) -> str:
    return f"{value:.4g}"


def same_question(a: QuerySpec, b: QuerySpec) -> bool:
    """The same question, whatever each round's own query id."""
    return a.model_copy(update={"query_id": b.query_id}).digest() == b.digest()


def period_key(moment: datetime, period: str) -> str:
    """``moment``'s budget period in the format of ``period`` (2026, 2026-Q1 or 2026-01)."""
    if "-Q" in period:
        return f"{moment.year:04d}-Q{(moment.month + 2) // 3}"
    if "-" in period:
        return f"{moment.year:04d}-{moment.month:02d}"
    return f"{moment.year:04d}"


def within_period(moment: datetime, periods: set[str], now: datetime) -> bool:
    """``moment`` lies in every node's current budget period (the calendar year of ``now`` when
    no node has reported one)."""
    return all(period_key(moment, p) == p for p in periods or {f"{now.year:04d}"})


def plan(
    release_id: str,
    questions: Sequence[Question],
    nodes: Sequence[Node],
    pending: Mapping[str, float],
    *,
    role: str,
    may_publish: bool,
    threshold: int | None,
) -> ReleasePlan:
    """What publishing would cost each node, and every reason it would fail before the end.
    ``pending``: ρ per node held by open rounds; ``threshold``: a new secure round's t."""
    problems = []
    if not may_publish:
        problems.append(
            f"this token has the {role} role; publishing needs an admin token. No round was "
            "asked and no budget was spent"
        )
    new = [q for q in questions if q.reuse is None]
    if new and not nodes:
        problems.append("no nodes are enrolled, so the recipe's reports cannot be asked")
    costs = [_cost(node, new, pending.get(node.id, 0.0), threshold) for node in nodes]
    for cost in costs:
        if cost.refusals:
            problems.append(_refusal(cost, new))
    reports = [
        PlannedReport(
            report=q.report,
            rho=0.0 if q.reuse is not None else q.spec.privacy.rho_charged,
            round_id=q.reuse,
            found=q.found,
        )
        for q in questions
    ]
    return ReleasePlan(
        release_id=release_id,
        role=role,
        may_publish=may_publish,
        reports=reports,
        nodes=costs,
        problems=problems,
    )


def _cost(node: Node, new: Sequence[Question], pending: float, threshold: int | None) -> NodeCost:
    refusals = []
    charged = 0.0
    for question in new:
        # The rounds are asked one after the other: each one's check counts the ones before it.
        t = threshold if question.spec.mode is Mode.SECURE else None
        reason = precheck(question.spec, node, {node.id: pending + charged}, t)
        if reason is not None:
            refusals.append(f"{question.report}: {reason}")
        charged += question.spec.privacy.rho_charged
    report = registry.stored_report(node)
    budget = None if report is None else report.budget
    return NodeCost(
        node_id=node.id,
        institution=node.institution,
        cost_rho=charged,
        period=None if budget is None else budget.period,
        cap_rho=None if budget is None else budget.cap_rho,
        spent_rho=None if budget is None else budget.spent_rho,
        pending_rho=pending,
        remaining_rho=None if budget is None else max(0.0, budget.remaining_rho - pending),
        refusals=refusals,
    )


def _refusal(cost: NodeCost, new: Sequence[Question]) -> str:
    asked = ", ".join(f"{q.report} ρ {rho(q.spec.privacy.rho_charged)}" for q in new)
    where = f"{cost.institution} (node {cost.node_id})"
    budget = (
        "it has not reported its budget"
        if cost.cap_rho is None
        else f"it has spent ρ {rho(cost.spent_rho or 0.0)} of its cap ρ {rho(cost.cap_rho)} for "
        f"{cost.period}, ρ {rho(cost.pending_rho)} is held by open rounds, "
        f"ρ {rho(cost.remaining_rho or 0.0)} is left"
    )
    return (
        f"{where} would refuse ({'; '.join(cost.refusals)}): the recipe needs "
        f"ρ {rho(cost.cost_rho)} of it ({asked}); {budget}"
    )


def budget_periods(nodes: Sequence[Node]) -> set[str]:
    periods = set()
    for node in nodes:
        report = registry.stored_report(node)
        if report is not None:
            periods.add(report.budget.period)
    return periods
