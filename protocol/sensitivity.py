"""Sensitivities of each measure under the node's contribution bounds.

Pure functions; the proofs are in docs/explanation/privacy.md. Neighbouring datasets differ in all
rows of one person (the privacy unit: one person at one institution). After bounding, a person keeps
at most ``c = max_visits_per_person`` admissions in at most
``g = min(max_cells_per_person, c, number of cells in the query)`` cells, and each revenue value
lies in ``[lo, hi]``.

* visits: the person's vector v has v ≥ 0 and Σv ≤ c, so ‖v‖₁ ≤ c and ‖v‖₂ ≤ ‖v‖₁ ≤ c.
* persons: v ∈ {0, 1} with at most g ones, so ‖v‖₁ ≤ g and ‖v‖₂ ≤ √g.
* revenue: each of at most c values has |x| ≤ M = max(|lo|, |hi|), so ‖v‖₁ ≤ c·M and ‖v‖₂ ≤ c·M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.query import Bounds, Measure


@dataclass(frozen=True, slots=True)
class Sensitivity:
    l1: float
    l2: float


def sensitivity(measure: Measure, bounds: Bounds, cell_count: int | None = None) -> Sensitivity:
    """Δ₁ and Δ₂ of ``measure``; ``cell_count`` (the query's number of cells) tightens g."""
    c = bounds.max_visits_per_person
    g = bounds.effective_cells_per_person
    if cell_count is not None:
        g = min(g, cell_count)
    if measure is Measure.VISITS:
        return Sensitivity(l1=float(c), l2=float(c))
    if measure is Measure.PERSONS:
        return Sensitivity(l1=float(g), l2=math.sqrt(g))
    if measure is Measure.REVENUE:
        m = max(abs(bounds.revenue_min_cents), abs(bounds.revenue_max_cents))
        return Sensitivity(l1=float(c * m), l2=float(c * m))
    raise ValueError(f"no sensitivity for measure {measure!r}")  # pragma: no cover
