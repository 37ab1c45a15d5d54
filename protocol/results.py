"""Merged results as the aggregator returns them to analysts: sector estimates with standard
errors and 95% intervals, derived means and shares, and coverage (who answered, who did not)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from protocol.figures import Aggregation, FillsDeduplicated
from protocol.query import Measure, Mode, QuerySpec

Z95 = 1.959963984540054


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MeasureEstimate(_Frozen, FillsDeduplicated):
    """One measure over all cells (in the spec's canonical cell order), summed over the nodes
    that answered. ``standard_errors`` come from the noise each node reported; the intervals are
    estimate ± 1.96 standard errors.

    This is the wire format, kept as merged: estimates can be below 0 (noise around a small true
    value) and revenue is in cents. What people read (``publieksdata ask`` and the Python
    client's rows and frames) is derived from it by ``aggregator.client.presentation``: never
    below 0, in euros (``revenue_eur``), flagged when the interval is too wide to be useful.

    ``aggregation`` says how the institutions' figures were combined (today always summed), and
    ``deduplicated`` whether a ``persons`` figure counts each person once across the sector: it
    is false, because a person who visits three institutions is in three nodes' counts (null for
    visits and revenue). See :mod:`protocol.figures`."""

    measure: Measure
    estimates: tuple[int, ...]
    standard_errors: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    aggregation: Aggregation = Aggregation.SUM_OVER_INSTITUTIONS
    deduplicated: bool | None = None


class RatioEstimate(_Frozen):
    """A derived quantity per cell (a mean or a share) with a delta-method interval. Cells where
    the denominator estimate is not positive have no value (None). Like ``MeasureEstimate`` it
    is the wire format: ``mean_price`` is in cents and can be below 0."""

    name: str
    numerator: str
    denominator: str
    estimates: tuple[float | None, ...]
    standard_errors: tuple[float | None, ...]
    lower: tuple[float | None, ...]
    upper: tuple[float | None, ...]


class NodeStatus(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    INVALID = "invalid"


class NodeOutcome(_Frozen):
    node_id: str
    institution: str
    status: NodeStatus
    reason: str | None = None  # a refusal or invalid-answer reason code, never more


class Coverage(_Frozen):
    total: int
    answered: int
    refused: int
    timed_out: int
    invalid: int
    pending: int
    nodes: tuple[NodeOutcome, ...]


class RoundState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class RoundResult(_Frozen):
    round_id: str
    spec: QuerySpec
    analyst: str
    state: RoundState
    created_at: datetime
    deadline: datetime
    closed_at: datetime | None
    quorum: Annotated[int, Field(ge=1)]
    quorum_met: bool
    partial: bool  # closed with at least one node missing, refused or invalid
    noise: bool = True
    coverage: Coverage
    group_by: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    measures: tuple[MeasureEstimate, ...] = ()  # empty until closed with the quorum met
    ratios: tuple[RatioEstimate, ...] = ()
    confidence: float = 0.95
    mode: Mode = Mode.INDEPENDENT
    threshold: int | None = None  # secure rounds: t
    phase: str | None = None  # secure rounds: the phase under way
    failure: str | None = None  # secure rounds: why no sum was released

    def measure(self, measure: Measure | str) -> MeasureEstimate:
        for estimate in self.measures:
            if estimate.measure == measure:
                return estimate
        raise KeyError(measure)
