"""Which released values are plausible for a query: the range a node's answer must lie in.

Pure functions, used by the aggregator to refuse an answer that no honest node could have sent
(docs/reference/query-spec.md, "Plausible values"). The spec's contribution bounds say how much
one person can add to a cell; what they cannot say is how many persons a node holds, so the
range assumes at most ``MAX_PERSONS_PER_NODE`` — far more than any institution, hub or country
in the sector has. Per cell, with c = max_visits_per_person and revenue clamped to [lo, hi]:

* persons: 0 … P (each person counts at most once per cell);
* visits: 0 … P·c;
* revenue: P·c·min(lo, 0) … P·c·max(hi, 0);

each widened by ``NOISE_SIGMAS`` standard deviations of the answer's noise (the chance that
honest noise falls outside is below 10⁻³⁰), and never beyond ±(2⁵³ − 1), the integers that
JSON can carry exactly, so that every release built from accepted answers can be verified.
"""

from __future__ import annotations

import math

from protocol.http import MAX_SAFE_INTEGER
from protocol.query import Measure, QuerySpec

MAX_PERSONS_PER_NODE = 100_000_000
NOISE_SIGMAS = 50


def value_range(spec: QuerySpec, measure: Measure, noise_sd: float) -> tuple[int, int]:
    """The inclusive range of plausible values of one cell of ``measure`` in one node's answer
    whose noise has standard deviation ``noise_sd`` (0 for an exact answer)."""
    if not (math.isfinite(noise_sd) and noise_sd >= 0):
        raise ValueError(f"noise_sd must be finite and non-negative, got {noise_sd}")
    bounds = spec.bounds
    people = MAX_PERSONS_PER_NODE
    visits = people * bounds.max_visits_per_person
    if measure is Measure.PERSONS:
        low, high = 0, people
    elif measure is Measure.VISITS:
        low, high = 0, visits
    elif measure is Measure.REVENUE:
        low = visits * min(bounds.revenue_min_cents, 0)
        high = visits * max(bounds.revenue_max_cents, 0)
    else:  # pragma: no cover - every measure is listed above
        raise ValueError(f"no range for measure {measure!r}")
    margin = math.ceil(NOISE_SIGMAS * noise_sd)
    return max(low - margin, -MAX_SAFE_INTEGER), min(high + margin, MAX_SAFE_INTEGER)


def implausible(spec: QuerySpec, measure: Measure, values: tuple[int, ...], sd: float) -> bool:
    """True if any value lies outside :func:`value_range`."""
    low, high = value_range(spec, measure, sd)
    return bool(values) and (min(values) < low or max(values) > high)
