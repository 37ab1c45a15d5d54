"""A node's policy and the one judgement of a query against it: ``violation(spec, policy)``.

The policy is ``PolicySummary`` (protocol/messages.py): what a node enforces and reports with
every poll. The node judges each query against the summary of its own settings
(``node.services.policy``); the aggregator judges the same query against the node's last signed
report before it asks (its pre-check). Both call ``violation``, so they cannot disagree on a
rule: the aggregator refuses early exactly when the node would refuse on policy.

A field that an older node does not report is None, and no rule is judged on it: the aggregator
then asks, and the node (which knows its own settings) refuses if it must. Budgets are not part
of this: the node's ledger judges those, and the aggregator keeps its own estimate of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.messages import PolicySummary, RefusalReason
from protocol.noise_shares import query_worst_case_rho
from protocol.query import Mode, QuerySpec

# The worst case of a secure round is computed in floating point on both sides; this factor
# keeps a value equal to the limit in real numbers from counting as above it.
_WORST_CASE_SLACK = 1 + 1e-9


class Rule(StrEnum):
    """The rules of a node's policy, in the order they are judged."""

    SECURE_ANSWERS = "secure_answers"  # the node takes part in secure rounds at all
    SECURE_MECHANISM = "secure_mechanism"  # a secure round needs a ρ (zCDP) budget
    DIMENSIONS = "allowed_dimensions"
    CELLS = "max_cells"
    VISITS = "max_visits_per_person"
    COST = "max_rho_per_query"
    SECURE_WORST_CASE = "secure_max_worst_rho"

    @property
    def reason(self) -> RefusalReason:
        """The refusal reason code a node sends when a query breaks this rule."""
        return _REASONS[self]


_REASONS = {
    Rule.SECURE_ANSWERS: RefusalReason.POLICY_MODE,
    Rule.SECURE_MECHANISM: RefusalReason.POLICY_MODE,
    Rule.DIMENSIONS: RefusalReason.POLICY_DIMENSION,
    Rule.CELLS: RefusalReason.POLICY_CELLS,
    Rule.VISITS: RefusalReason.POLICY_BOUNDS,
    Rule.COST: RefusalReason.POLICY_COST,
    Rule.SECURE_WORST_CASE: RefusalReason.POLICY_SECURE_WORST_CASE,
}

# (Dutch, English); {query} is what the query asks, {limit} the node's limit.
_TEXTS = {
    Rule.SECURE_ANSWERS: (
        "deze node doet niet mee aan beveiligde rondes",
        "this node does not answer secure rounds",
    ),
    Rule.SECURE_MECHANISM: (
        "een beveiligde ronde heeft een ρ-budget (zCDP) nodig",
        "a secure round needs a rho (zCDP) budget",
    ),
    Rule.DIMENSIONS: (
        "deze node staat geen vragen toe over: {query}",
        "this node does not allow queries on: {query}",
    ),
    Rule.CELLS: (
        "de vraag heeft {query} cellen; deze node staat er hoogstens {limit} toe",
        "the query has {query} cells; this node allows at most {limit}",
    ),
    Rule.VISITS: (
        "max_visits_per_person is {query}; deze node staat hoogstens {limit} toe",
        "max_visits_per_person is {query}; this node allows at most {limit}",
    ),
    Rule.COST: (
        "de vraag kost ρ={query}; deze node staat hoogstens ρ={limit} per vraag toe",
        "the query costs ρ={query}; this node allows at most ρ={limit} per query",
    ),
    Rule.SECURE_WORST_CASE: (
        "met drempel {threshold} geeft het eigen ruisaandeel van deze node alleen al ρ={query}; "
        "deze node staat in het slechtste geval hoogstens ρ={limit} toe",
        "with threshold {threshold} this node's own noise share alone gives ρ={query}; this "
        "node allows at most ρ={limit} in the worst case",
    ),
}


@dataclass(frozen=True, slots=True)
class Violation:
    """The first rule a query breaks, with what the query asks and what the node allows."""

    rule: Rule
    query: str = ""
    limit: str = ""
    threshold: int | None = None

    @property
    def reason(self) -> RefusalReason:
        return self.rule.reason

    def text(self, lang: str = "en") -> str:
        """Why, in Dutch (``"nl"``) or English: the message of the node's signed refusal."""
        nl, en = _TEXTS[self.rule]
        template = nl if lang == "nl" else en
        return template.format(query=self.query, limit=self.limit, threshold=self.threshold)


def violation(
    spec: QuerySpec, policy: PolicySummary, threshold: int | None = None
) -> Violation | None:
    """The first rule of ``policy`` that ``spec`` breaks, or None when it breaks none.

    ``threshold`` is the secure round's t; without it the worst case of a secure round is not
    judged (a node is asked a secure query only inside a round, which has one).
    """
    secure = spec.mode is Mode.SECURE
    worst_limit = policy.secure_max_worst_rho
    if secure and worst_limit is not None and worst_limit <= 0:
        return Violation(Rule.SECURE_ANSWERS)
    if policy.allowed_dimensions is not None:
        used = set(spec.group_by) | set(spec.filters)
        blocked = sorted(used - set(policy.allowed_dimensions))
        if blocked:
            return Violation(Rule.DIMENSIONS, ", ".join(blocked))
    cells = spec.cell_count
    if cells > policy.max_cells:
        return Violation(Rule.CELLS, str(cells), str(policy.max_cells))
    visits = spec.bounds.max_visits_per_person
    if policy.max_visits_per_person is not None and visits > policy.max_visits_per_person:
        return Violation(Rule.VISITS, str(visits), str(policy.max_visits_per_person))
    cost = spec.privacy.rho_charged
    if cost > policy.max_rho_per_query:
        return Violation(Rule.COST, f"{cost:g}", f"{policy.max_rho_per_query:g}")
    if secure and threshold is not None and worst_limit is not None:
        try:
            worst = query_worst_case_rho(spec, threshold)
        except ValueError:
            return Violation(Rule.SECURE_MECHANISM)
        if worst > worst_limit * _WORST_CASE_SLACK:
            return Violation(Rule.SECURE_WORST_CASE, f"{worst:.4g}", f"{worst_limit:g}", threshold)
    return None
