"""Messages exchanged between nodes and their queriers: signed queries, answers and refusals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from protocol.query import Measure, Mechanism, QuerySpec

QUERY = "query"
ANSWER = "answer"
REFUSAL = "refusal"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueryRequest(_Frozen):
    """What a querier signs: the spec plus who the analyst is (for per-analyst caps and audit)."""

    spec: QuerySpec
    analyst: Annotated[str, Field(min_length=1, max_length=120)] = "unnamed"


class MeasureResult(_Frozen):
    measure: Measure
    values: tuple[int, ...]
    mechanism: Mechanism | None
    scale: float
    noise_sd: float
    sensitivity_l1: float
    sensitivity_l2: float
    rho: float
    epsilon: float | None = None


class PrivacySpent(_Frozen):
    rho: float
    epsilon: float
    delta: float


class BudgetStatus(_Frozen):
    period: str
    cap_rho: float
    spent_rho: float

    @property
    def remaining_rho(self) -> float:
        return max(0.0, self.cap_rho - self.spent_rho)


class QueryAnswer(_Frozen):
    """The node's DP answer. Values follow the spec's canonical cell order (QuerySpec.cells)."""

    query_id: str
    query_hash: str
    catalogue_version: str
    answered_at: datetime
    group_by: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    measures: tuple[MeasureResult, ...]
    privacy: PrivacySpent
    budget: BudgetStatus
    noise: bool = True

    def measure(self, measure: Measure) -> MeasureResult:
        for result in self.measures:
            if result.measure is measure:
                return result
        raise KeyError(measure)


class RefusalReason(StrEnum):
    BUDGET_EXHAUSTED = "budget_exhausted"
    ANALYST_BUDGET_EXHAUSTED = "analyst_budget_exhausted"
    POLICY_DIMENSION = "policy_dimension_not_allowed"
    POLICY_CELLS = "policy_too_many_cells"
    POLICY_BOUNDS = "policy_bounds_not_allowed"
    POLICY_COST = "policy_cost_too_high"
    POLICY_MODE = "policy_mode_not_supported"
    QUERY_ID_REUSED = "query_id_reused"


class Refusal(_Frozen):
    query_id: str
    reason: RefusalReason
    message: str


# --- Federation: enrolment, polling and tasks (design §8) -------------------------------------

JOIN = "join"
POLL = "poll"
TASK = "task"

InstitutionName = Annotated[str, Field(min_length=1, max_length=120)]
KeyId = Annotated[str, Field(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$")]
InviteCode = Annotated[str, Field(min_length=8, max_length=64)]


class JoinRequest(_Frozen):
    """Signed by the joining node's own key, which proves it holds the key it enrols."""

    invite: InviteCode
    institution: InstitutionName
    public_key: Annotated[str, Field(min_length=40, max_length=64)]


class JoinResponse(_Frozen):
    node_id: str
    institution: str
    aggregator_key: str  # base64url raw Ed25519 public key
    aggregator_key_id: KeyId


class PolicySummary(_Frozen):
    """What a node tells the aggregator of its policy, so that it can refuse early."""

    max_cells: int
    max_rho_per_query: float
    allowed_dimensions: tuple[str, ...] | None = None


class NodeReport(_Frozen):
    """Signed with every poll: the node's budget and policy as it stands now."""

    institution: InstitutionName
    catalogue_version: str
    budget: BudgetStatus
    policy: PolicySummary
    software: Annotated[str, Field(max_length=40)] = ""


class Poll(_Frozen):
    """A node asking for work. ``in_flight`` lists tasks it is answering now."""

    aggregator_key_id: KeyId
    report: NodeReport
    wait_seconds: Annotated[float, Field(ge=0, le=120)] = 25.0
    in_flight: Annotated[tuple[str, ...], Field(max_length=1000)] = ()


class Task(_Frozen):
    """One node's share of a round, signed by the aggregator when it is handed over."""

    task_id: Annotated[str, Field(min_length=8, max_length=80)]
    round_id: Annotated[str, Field(min_length=8, max_length=80)]
    node_key_id: KeyId  # the one node this task is for
    deadline: datetime
    request: QueryRequest


KEY_ROTATION = "key_rotation"


class KeyRotation(_Frozen):
    """The aggregator's old key vouching for its new one; nodes that trust the old key move on."""

    old_key_id: KeyId
    new_key_id: KeyId
    new_key: Annotated[str, Field(min_length=40, max_length=64)]
