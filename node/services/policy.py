"""The node's own policy: which queries it is willing to answer at all (before any budget)."""

from __future__ import annotations

from node.settings import NodeSettings
from protocol.messages import Refusal, RefusalReason
from protocol.query import Mode, QuerySpec


def check_policy(spec: QuerySpec, settings: NodeSettings) -> Refusal | None:
    """A refusal with a reason code, or None when the query is within policy."""

    def refuse(reason: RefusalReason, message: str) -> Refusal:
        return Refusal(query_id=spec.query_id, reason=reason, message=message)

    if spec.mode is Mode.SECURE and not settings.secure_answers:
        return refuse(RefusalReason.POLICY_MODE, "this node does not answer secure rounds")
    if settings.allowed_dimensions is not None:
        allowed = set(settings.allowed_dimensions)
        used = set(spec.group_by) | set(spec.filters)
        blocked = sorted(used - allowed)
        if blocked:
            return refuse(
                RefusalReason.POLICY_DIMENSION,
                f"this node does not allow queries on: {', '.join(blocked)}",
            )
    if spec.cell_count > settings.max_cells:
        return refuse(
            RefusalReason.POLICY_CELLS,
            f"the query has {spec.cell_count} cells; this node allows at most {settings.max_cells}",
        )
    if spec.bounds.max_visits_per_person > settings.max_visits_per_person:
        return refuse(
            RefusalReason.POLICY_BOUNDS,
            f"max_visits_per_person is {spec.bounds.max_visits_per_person}; this node allows at "
            f"most {settings.max_visits_per_person}",
        )
    if spec.privacy.rho_charged > settings.max_rho_per_query:
        return refuse(
            RefusalReason.POLICY_COST,
            f"the query costs ρ={spec.privacy.rho_charged:g}; this node allows at most "
            f"ρ={settings.max_rho_per_query:g} per query",
        )
    return None
