"""Admission: would a node refuse this round? Judged before any task exists, from the node's last
signed report (its policy and budget) and the ρ already held by its unsettled tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services import registry
from aggregator.storage.models import Node
from protocol.messages import RefusalReason
from protocol.noise_shares import query_worst_case_rho
from protocol.query import QuerySpec


@dataclass(frozen=True, slots=True)
class WouldRefuse:
    node_id: str
    institution: str
    reason: str


def precheck(
    spec: QuerySpec, node: Node, pending: dict[str, float], threshold: int | None = None
) -> str | None:
    """The reason a node would refuse ``spec``, judged from its last signed report, or None."""
    report = registry.stored_report(node)
    if report is None:
        return None  # never reported (or unreadable): send, and let the node decide
    cost = spec.privacy.rho_charged
    policy = report.policy
    if policy.allowed_dimensions is not None:
        used = set(spec.group_by) | set(spec.filters)
        if not used <= set(policy.allowed_dimensions):
            return RefusalReason.POLICY_DIMENSION.value
    if spec.cell_count > policy.max_cells:
        return RefusalReason.POLICY_CELLS.value
    if cost > policy.max_rho_per_query * (1 + 1e-9):
        return RefusalReason.POLICY_COST.value
    if threshold is not None and policy.secure_max_worst_rho is not None:
        if policy.secure_max_worst_rho <= 0:
            return RefusalReason.POLICY_MODE.value
        if query_worst_case_rho(spec, threshold) > policy.secure_max_worst_rho * (1 + 1e-9):
            return RefusalReason.POLICY_SECURE_WORST_CASE.value
    remaining = registry.remaining_estimate(node, pending)
    if remaining is not None and cost > remaining * (1 + 1e-9) + 1e-12:
        return RefusalReason.BUDGET_EXHAUSTED.value
    return None


def admit(
    spec: QuerySpec, nodes: Sequence[Node], pending: dict[str, float], threshold: int | None
) -> None:
    """Raise ``would_be_refused`` naming every node that would refuse ``spec``."""
    refusing = [
        WouldRefuse(n.id, n.institution, reason)
        for n in nodes
        if (reason := precheck(spec, n, pending, threshold)) is not None
    ]
    if refusing:
        raise AggregatorError(
            ErrorCode.WOULD_BE_REFUSED,
            f"{len(refusing)} of {len(nodes)} nodes would refuse; leave them out with "
            "'nodes' or ask for less",
            nodes=[
                {"node_id": r.node_id, "institution": r.institution, "reason": r.reason}
                for r in refusing
            ],
        )
