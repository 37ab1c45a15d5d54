"""Admission: would a node refuse this round? Judged before any task exists, from the node's last
signed report (its policy and budget) and the ρ already held by its unsettled tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aggregator.errors import AggregatorError, ErrorCode
from aggregator.services import registry
from aggregator.storage.models import Node
from protocol.messages import RefusalReason
from protocol.policy import violation
from protocol.query import QuerySpec


@dataclass(frozen=True, slots=True)
class WouldRefuse:
    node_id: str
    institution: str
    reason: str


def precheck(
    spec: QuerySpec, node: Node, pending: dict[str, float], threshold: int | None = None
) -> str | None:
    """The reason a node would refuse ``spec``, judged from its last signed report, or None.
    Its policy is judged as the node judges it (``protocol.policy.violation``)."""
    report = registry.stored_report(node)
    if report is None:
        return None  # never reported (or unreadable): send, and let the node decide
    broken = violation(spec, report.policy, threshold)
    if broken is not None:
        return broken.reason.value
    cost = spec.privacy.rho_charged
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
