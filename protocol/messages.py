"""Messages exchanged between nodes and their queriers: signed queries, answers and refusals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from protocol.http import MAX_SAFE_INTEGER
from protocol.query import Measure, Mechanism, QuerySpec

QUERY = "query"
ANSWER = "answer"
REFUSAL = "refusal"


class _Frozen(BaseModel):
    # No message carries NaN or ±Infinity: every float is finite (a hostile peer's 1e400 is
    # refused here, not met later as an overflow).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# A released value must have an exact JSON form (RFC 8785 / I-JSON), or nothing built from it
# could be signed and verified.
SafeInt = Annotated[int, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
# Budgets as nodes report them: never negative; no node's cap comes near this (its setting
# allows at most 100).
MAX_REPORTED_RHO = 10_000.0
Rho = Annotated[float, Field(ge=0, le=MAX_REPORTED_RHO)]


class QueryRequest(_Frozen):
    """What a querier signs: the spec plus who the analyst is (for per-analyst caps and audit)."""

    spec: QuerySpec
    analyst: Annotated[str, Field(min_length=1, max_length=120)] = "unnamed"


class MeasureResult(_Frozen):
    measure: Measure
    values: tuple[SafeInt, ...]
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
    period: Annotated[str, Field(max_length=40)]
    cap_rho: Rho
    spent_rho: Rho

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
    POLICY_SECURE_WORST_CASE = "policy_secure_worst_case_too_high"
    SECURE_PROTOCOL = "secure_protocol_violation"
    DECLINED = "declined_by_operator"
    BUDGET_SYNC = "budget_sync_pending"


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
    """A node's policy: what it enforces, and tells the aggregator so that it can refuse early.
    Both judge a query against it with ``protocol.policy.violation``. A field an older node does
    not send is None, and no rule is judged on it."""

    max_cells: Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
    max_rho_per_query: Rho
    allowed_dimensions: tuple[str, ...] | None = None
    # Refuses secure rounds whose worst case exceeds it; 0: takes part in no secure round.
    secure_max_worst_rho: Rho | None = None
    max_visits_per_person: Annotated[int, Field(ge=1, le=MAX_SAFE_INTEGER)] | None = None


class NodeReport(_Frozen):
    """Signed with every poll: the node's budget and policy as it stands now."""

    institution: InstitutionName
    catalogue_version: str
    budget: BudgetStatus
    policy: PolicySummary
    software: Annotated[str, Field(max_length=40)] = ""


class Poll(_Frozen):
    """A node asking for work. ``in_flight`` lists tasks it is answering now, and
    ``awaiting_approval`` those of them that wait for its operator's decision."""

    aggregator_key_id: KeyId
    report: NodeReport
    wait_seconds: Annotated[float, Field(ge=0, le=120)] = 25.0
    in_flight: Annotated[tuple[str, ...], Field(max_length=1000)] = ()
    awaiting_approval: Annotated[tuple[str, ...], Field(max_length=1000)] = ()


# --- Secure aggregation (design §9; protocol/secagg.py) ---------------------------------------

SECAGG_ACCEPT = "secagg_accept"
SECAGG_KEYS = "secagg_keys"
SECAGG_SHARES = "secagg_shares"
SECAGG_MASKED = "secagg_masked"
SECAGG_REVEAL = "secagg_reveal"
SECAGG_TYPES = (SECAGG_ACCEPT, SECAGG_KEYS, SECAGG_SHARES, SECAGG_MASKED, SECAGG_REVEAL)

PublicText = Annotated[str, Field(min_length=40, max_length=64)]
Sealed = Annotated[str, Field(min_length=20, max_length=400)]
ShareValue = Annotated[str, Field(pattern=r"^[0-9]{1,160}$")]  # a GF(p) element in decimal


class Phase(StrEnum):
    """What a task asks of a node. Independent rounds have one phase; secure rounds five: an
    announcement that waits for the operators' approval, then the four protocol phases."""

    QUERY = "query"
    ANNOUNCE = "announce"  # take part? (a manual node's operator approves here)
    KEYS = "keys"  # advertise ephemeral keys
    SHARES = "shares"  # Shamir-share the seeds to the peers
    MASK = "mask"  # submit the masked, noisy vector
    UNMASK = "unmask"  # reveal the shares that remove the masks


class SecAggAccept(_Frozen):
    """Phase 0, signed by the node's long-term key: it takes part in this round (for a node
    with manual approval: its operator approved the query). A refusal declines instead."""

    round_id: str
    query_id: str
    query_hash: str
    node_key_id: KeyId


class SecAggKeys(_Frozen):
    """Phase 1, signed by the node's long-term key: its two ephemeral X25519 public keys."""

    round_id: str
    query_id: str
    query_hash: str
    node_key_id: KeyId
    c_public: PublicText  # encrypts the shares sent to this node
    s_public: PublicText  # agrees the pairwise mask seeds


class SecAggPeer(_Frozen):
    """A peer as the aggregator relays it: its enrolled key and its signed phase-1 message."""

    node_key_id: KeyId
    public_key: PublicText  # the peer's long-term Ed25519 key, as enrolled
    keys: dict[str, Any]  # the peer's SECAGG_KEYS envelope, verbatim


class SecAggSetup(_Frozen):
    """Phase 2 task data: the nodes that advertised keys (U1) in ring order, and this node's
    closed neighbourhood on that ring (itself and its neighbours) with their signed keys."""

    peers: Annotated[tuple[SecAggPeer, ...], Field(max_length=5000)]
    ring: Annotated[tuple[KeyId, ...], Field(max_length=5000)] = ()


class SecAggShares(_Frozen):
    """Phase 2 answer: per peer, ChaCha20-Poly1305 of this node's shares of ``s`` and ``b``."""

    round_id: str
    query_id: str
    node_key_id: KeyId
    sealed: dict[KeyId, Sealed]
    b_commitment: Annotated[
        str, Field(pattern=r"^[0-9a-f]{64}$")
    ]  # SHA-256 of b, checked at the end


class SecAggMaskTask(_Frozen):
    """Phase 3 task data: the sealed shares addressed to this node, by sender (the set U2)."""

    sealed: dict[KeyId, Sealed]


class SecureMeasure(_Frozen):
    """One measure of a secure answer: how this node's noise share was drawn and what it costs."""

    measure: Measure
    scale: float  # σᵢ of this node's discrete Gaussian share
    noise_sd: float  # exact SD of the share
    sensitivity_l1: float
    sensitivity_l2: float
    rho: float  # ρ of this measure if at least ``threshold`` honest nodes' shares are in the sum
    rho_worst: float  # ρ of this node's own share alone (the assumption fails)


class SecAggMasked(_Frozen):
    """Phase 3 answer: the masked vector (all measures, concatenated), never readable alone."""

    round_id: str
    query_id: str
    query_hash: str
    catalogue_version: str
    answered_at: datetime
    node_key_id: KeyId
    threshold: int
    length: int
    vector: Annotated[str, Field(max_length=2_000_000)]  # base64url of little-endian uint64
    measures: tuple[SecureMeasure, ...]
    privacy: PrivacySpent  # under the assumption
    rho_worst: float  # the whole answer's ρ if the assumption fails
    budget: BudgetStatus
    noise: bool = True
    bad_shares: tuple[KeyId, ...] = ()  # senders whose sealed shares did not open


class SecAggUnmaskTask(_Frozen):
    """Phase 4 task data: the nodes whose masked vectors the aggregator holds (the set U3)."""

    survivors: Annotated[tuple[KeyId, ...], Field(max_length=5000)]


class SecAggReveal(_Frozen):
    """Phase 4 answer: ``b`` shares of survivors and ``s`` shares of dropped peers, never both."""

    round_id: str
    query_id: str
    node_key_id: KeyId
    x: int  # this node's Shamir position
    b_shares: dict[KeyId, ShareValue]
    s_shares: dict[KeyId, ShareValue]


class Task(_Frozen):
    """One node's share of a round, signed by the aggregator when it is handed over."""

    task_id: Annotated[str, Field(min_length=8, max_length=80)]
    round_id: Annotated[str, Field(min_length=8, max_length=80)]
    node_key_id: KeyId  # the one node this task is for
    deadline: datetime
    request: QueryRequest
    phase: Phase = Phase.QUERY
    setup: SecAggSetup | None = None  # phase SHARES
    mask: SecAggMaskTask | None = None  # phase MASK
    unmask: SecAggUnmaskTask | None = None  # phase UNMASK
    threshold: Annotated[int, Field(ge=2)] | None = None  # secure rounds: t


KEY_ROTATION = "key_rotation"
NODE_KEY_ROTATION = "node_key_rotation"  # a node's enrolled key announcing its next key
NODE_KEY_CONFIRM = "node_key_confirm"  # the next key confirming it (proof of possession)


class KeyRotation(_Frozen):
    """The aggregator's old key vouching for its new one; nodes that trust the old key move on."""

    old_key_id: KeyId
    new_key_id: KeyId
    new_key: Annotated[str, Field(min_length=40, max_length=64)]


class NodeKeyRotation(_Frozen):
    """A node's announcement, signed by its enrolled key, that ``new_key`` replaces it;
    ``confirmation`` is the same three fields signed by the new key (type NODE_KEY_CONFIRM).
    The aggregator then accepts both keys for an overlap window, the new one from then on."""

    old_key_id: KeyId
    new_key_id: KeyId
    new_key: Annotated[str, Field(min_length=40, max_length=64)]
    confirmation: dict[str, Any]
