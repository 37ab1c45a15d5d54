"""What a round would cost and how accurate it would be, before anything is asked or spent.

The aggregator's POST /v1/rounds/preview answers with a ``RoundPreview``; the Python client and
``publieksdata ask --preview`` read it. How the figures are computed: aggregator/accuracy.py and
docs/explanation/merging.md ("Predicting the half-width").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from protocol.query import Measure, Mode, QuerySpec


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodePreview(_Model):
    """One node of the round: what it would pay, and whether it would refuse."""

    node_id: str
    institution: str
    rho: float  # charged to its ledger if it answers (zCDP ρ; ε²/2 under pure ε)
    worst_case_rho: float | None = None  # secure: ρ of its own noise shares alone
    # The refusal reason code judged from its last signed report and policy; None when it would
    # answer, or when it has never reported (then only the node itself can tell).
    refusal: str | None = None
    reported: bool = True  # False: no signed report yet, so nothing could be checked


class MeasurePreview(_Model):
    """One measure's expected accuracy. Every cell of a measure has the same noise, so the same
    standard error and half-width; they do not depend on the data."""

    measure: Measure
    noise_sd: float  # of one node's noise (independent) or one noise share (secure)
    terms: int  # how many such independent noise terms each merged cell sums
    standard_error: float  # √(terms · noise_sd²)
    half_width: float  # of each cell's 95% interval: 1.96 · standard_error
    # On a release page with the standard suppression rule, a cell whose published figure is
    # below this is shown as "." (None: nothing suppressed). Revenue in cents.
    shown_from: float | None = None


class RoundPreview(_Model):
    spec: QuerySpec  # the question, as it would be asked
    mode: Mode
    threshold: int | None  # secure rounds: t
    quorum: int
    nodes: tuple[NodePreview, ...]
    # The nodes the accuracy assumes answer: every node that would not refuse. With fewer
    # answers (nodes that time out) each half-width is smaller, never larger.
    answering: int
    measures: tuple[MeasurePreview, ...]  # empty when no round could be run (see ``problem``)
    suppress_relative_halfwidth: float | None  # the release rule ``shown_from`` applies
    problem: str | None = None  # why POST /v1/rounds with this body would be turned down

    def measure(self, measure: Measure | str) -> MeasurePreview:
        """The preview of one measure (by name or enum)."""
        for m in self.measures:
            if m.measure == measure:
                return m
        raise KeyError(f"no preview for {measure!r} (the round would not run, or lacks it)")

    @property
    def refusing(self) -> tuple[NodePreview, ...]:
        return tuple(n for n in self.nodes if n.refusal is not None)
