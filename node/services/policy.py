"""The node's own policy: which queries it is willing to answer at all (before any budget).

The node judges a query against the summary of its own settings, the same ``PolicySummary`` it
reports to the aggregator with every poll, by ``protocol.policy.violation``: the one judgement the
aggregator's pre-check makes too.
"""

from __future__ import annotations

from node.settings import NodeSettings
from protocol.messages import PolicySummary, Refusal
from protocol.policy import violation
from protocol.query import QuerySpec


def policy_of(settings: NodeSettings) -> PolicySummary:
    """The node's policy as it enforces and reports it. A node that takes part in no secure
    round reports a worst-case limit of 0."""
    allowed = settings.allowed_dimensions
    return PolicySummary(
        max_cells=settings.max_cells,
        max_rho_per_query=settings.max_rho_per_query,
        allowed_dimensions=tuple(allowed) if allowed is not None else None,
        secure_max_worst_rho=settings.secure_max_worst_rho if settings.secure_answers else 0.0,
        max_visits_per_person=settings.max_visits_per_person,
    )


def check_policy(
    spec: QuerySpec, settings: NodeSettings, threshold: int | None = None
) -> Refusal | None:
    """A refusal with a reason code, or None when the query is within policy. ``threshold``: a
    secure round's t, to judge its worst case too."""
    found = violation(spec, policy_of(settings), threshold)
    if found is None:
        return None
    return Refusal(query_id=spec.query_id, reason=found.reason, message=found.text("en"))
