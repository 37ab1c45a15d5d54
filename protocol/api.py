"""The aggregator's HTTP API models for analysts and admins, shared by the service and the
Python client so that both sides parse exactly the same shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.query import Mode, QuerySpec


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReportRequest(_Model):
    """A named report template with its parameters (see GET /v1/reports)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    year: Annotated[int, Field(ge=1900, le=2200)] | None = None
    start: date | None = None  # with ``end``, instead of ``year``
    end: date | None = None
    rho: Annotated[float, Field(gt=0, le=10)] | None = None
    epsilon: Annotated[float, Field(gt=0, le=20)] | None = None
    codes: Annotated[tuple[str, ...], Field(max_length=5000)] | None = None
    mode: Mode | None = None  # default: secure under rho, independent under epsilon


class RoundRequest(_Model):
    """Ask the federation one question: a full spec, or a report template."""

    spec: QuerySpec | None = None
    report: ReportRequest | None = None
    nodes: Annotated[tuple[str, ...], Field(min_length=1, max_length=5000)] | None = None
    deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    quorum: Annotated[int, Field(ge=1)] | None = None  # independent rounds
    threshold: Annotated[int, Field(ge=2)] | None = None  # secure rounds: t (default ⌈2N/3⌉)
    # Secure rounds: how long the nodes' operators have to approve (phase ANNOUNCE) before the
    # protocol phases get deadline_seconds; by default deadline_seconds again.
    approval_deadline_seconds: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _one_question(self) -> Self:
        if (self.spec is None) == (self.report is None):
            raise ValueError("give exactly one of 'spec' or 'report'")
        return self


class RoundSummary(_Model):
    round_id: str
    title: str
    analyst: str
    state: str
    created_at: datetime
    deadline: datetime
    closed_at: datetime | None


class NodeBudget(_Model):
    period: str
    cap_rho: float
    spent_rho: float
    remaining_rho: float  # as last reported, less what open rounds will spend
    reported_at: datetime


class NodeInfo(_Model):
    node_id: str
    institution: str
    status: str
    key_id: str
    fingerprint: str
    joined_at: datetime
    last_seen_at: datetime | None
    connected: bool  # polled within the last minute
    budget: NodeBudget | None


class InviteRequest(_Model):
    institution: Annotated[str, Field(min_length=1, max_length=120)]
    valid_hours: Annotated[float, Field(gt=0, le=24 * 30)] | None = None


class InviteCreated(_Model):
    code: str
    institution: str
    node_id: str | None  # set when the invite re-keys an enrolled node
    expires_at: datetime
    aggregator_fingerprint: str


class PublishRequest(_Model):
    """Publish a release. ``recipe``: a built-in recipe name (``standard-2025``) or a recipe
    document (see docs/reference/release-recipes.md); ``asked``: for tables that name a
    ``report``, the completed round asked for it (report name → round id). ``correction``: what
    changed, in Dutch and English, when the release already exists (a new version)."""

    recipe: str | dict[str, Any]
    asked: dict[str, str] = Field(default_factory=dict)
    correction: dict[str, str] | None = None


class PlannedReport(_Model):
    """One report a recipe asks: the round it reuses (a completed round of the same question,
    given with ``asked`` or found by the aggregator) or the ρ a new round charges every node."""

    report: str
    rho: float  # what a new round charges each node; nothing when ``round_id`` is reused
    round_id: str | None = None  # reused: no budget is spent on this report
    found: bool = False  # the aggregator found ``round_id`` (not given with ``asked``)


class NodeCost(_Model):
    """What a recipe's new rounds would cost one node, against its last signed budget."""

    node_id: str
    institution: str
    cost_rho: float  # summed over the recipe's new rounds
    period: str | None  # None: the node has not reported yet (it decides when asked)
    cap_rho: float | None
    spent_rho: float | None
    pending_rho: float  # in open rounds it has not settled yet
    remaining_rho: float | None  # cap - spent - pending, as last reported
    refusals: list[str]  # why it would refuse, per report; empty: it would answer


class ReleasePlan(_Model):
    """POST /v1/releases/plan: what publishing a recipe would ask and cost, asking nothing."""

    release_id: str
    role: str
    may_publish: bool  # the token's role may publish (admin)
    reports: list[PlannedReport]
    nodes: list[NodeCost]
    problems: list[str]  # empty: publishing may go ahead

    @property
    def ok(self) -> bool:
        return not self.problems


class PublishedRelease(_Model):
    slug: str
    release_id: str
    version: int
    sequence: int
    hash: str
    corrects: str | None
    tables: int
    path: str  # the release page on the public site, e.g. /nl/releases/sector-2025-v1


class ChainEntry(_Model):
    sequence: int
    slug: str
    hash: str
    json_path: str  # the sealed release, byte for byte
    page_path: str


class ReleaseChain(_Model):
    """GET /v1/releases: what ``publieksdata verify-release`` needs to check the whole chain.
    Compare the fingerprint with one the sector body publishes elsewhere before trusting it."""

    aggregator: str
    key_id: str
    public_key: str
    fingerprint: str
    # The aggregator's keys, current and retired, in an envelope of type RELEASE_KEYS signed by
    # its current key: releases signed before a key rotation verify against the retired key
    # that the current key vouches for.
    keys: dict[str, Any]
    releases: list[ChainEntry]
