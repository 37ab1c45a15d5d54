"""Means and shares of merged estimates, with delta-method standard errors and 95% intervals.

Post-processing of released sums and counts (design §6): pure functions, no I/O, shared by the
aggregator's merge (every result's ``mean_price``) and the Python client (shares along a
dimension), which depends on ``protocol`` only. A ratio R = A/B of two merged totals with
independent noise has, by the delta method (first-order Taylor expansion around the estimates),

    Var(R) ≈ (Var A + R²·Var B) / B².

See docs/explanation/merging.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from protocol.query import Measure, QuerySpec
from protocol.results import Z95, MeasureEstimate, RatioEstimate

MEAN_PRICE = "mean_price"


def ratio(
    numerator: float, num_var: float, denominator: float, den_var: float
) -> tuple[float, float] | None:
    """R = A/B and its delta-method standard error, for independent noise on A and B.

    With ∂R/∂A = 1/B and ∂R/∂B = −A/B² = −R/B:  Var(R) ≈ (Var A + R²·Var B) / B².
    None when B ≤ 0: the ratio is then undefined or meaningless.
    """
    if denominator <= 0:
        return None
    r = numerator / denominator
    return r, math.sqrt(num_var + r * r * den_var) / denominator


def ratio_estimate(
    name: str, numerator: str, denominator: str, pairs: Sequence[tuple[float, float] | None]
) -> RatioEstimate:
    return RatioEstimate(
        name=name,
        numerator=numerator,
        denominator=denominator,
        estimates=tuple(None if p is None else p[0] for p in pairs),
        standard_errors=tuple(None if p is None else p[1] for p in pairs),
        lower=tuple(None if p is None else p[0] - Z95 * p[1] for p in pairs),
        upper=tuple(None if p is None else p[0] + Z95 * p[1] for p in pairs),
    )


def _find(estimates: Sequence[MeasureEstimate], measure: Measure) -> MeasureEstimate:
    for estimate in estimates:
        if estimate.measure is measure:
            return estimate
    raise ValueError(f"no estimate for {measure.value!r}; the query must include that measure")


def check_length(spec: QuerySpec, estimate: MeasureEstimate) -> None:
    if len(estimate.estimates) != spec.cell_count:
        raise ValueError(
            f"the {estimate.measure.value} estimate has {len(estimate.estimates)} cells, "
            f"the spec {spec.cell_count}"
        )


def mean_per(
    spec: QuerySpec,
    estimates: Sequence[MeasureEstimate],
    num: Measure,
    den: Measure,
    name: str,
) -> RatioEstimate:
    """Per cell, ``num`` per unit of ``den`` (e.g. revenue per visit) with a delta-method interval.

    Different measures get independent noise, so ``ratio`` applies cell by cell.
    """
    a, b = _find(estimates, num), _find(estimates, den)
    check_length(spec, a)
    check_length(spec, b)
    return mean_of(a, b, name)


def mean_of(a: MeasureEstimate, b: MeasureEstimate, name: str) -> RatioEstimate:
    """Cell by cell, ``a`` per unit of ``b`` with a delta-method interval (both of one length;
    different measures have independent noise)."""
    pairs = [
        ratio(x, sx * sx, y, sy * sy)
        for x, sx, y, sy in zip(
            a.estimates, a.standard_errors, b.estimates, b.standard_errors, strict=True
        )
    ]
    return ratio_estimate(name, a.measure.value, b.measure.value, pairs)


def _groups(spec: QuerySpec, along: str) -> list[range]:
    """Cell indices of each group of cells that differ only in ``along``.

    Cells are in row-major order (the last dimension varies fastest), so with n codes along the
    dimension and stride s (the number of cells of the dimensions after it), the group of base
    cell b is b, b+s, …, b+(n−1)s, and the bases are o·n·s + i for o over the earlier dimensions
    and i < s.
    """
    if along not in spec.group_by:
        raise ValueError(f"cannot take shares along {along!r}: the query does not group by it")
    sizes = [len(spec.domain(name)) for name in spec.group_by]
    position = spec.group_by.index(along)
    n = sizes[position]
    stride = math.prod(sizes[position + 1 :])
    outer = math.prod(sizes[:position])
    return [
        range(o * n * stride + i, (o + 1) * n * stride, stride)
        for o in range(outer)
        for i in range(stride)
    ]


def _shares_of(x: Sequence[float], v: Sequence[float]) -> list[tuple[float, float] | None]:
    """p_k = x_k/S with S = Σ_j x_j; by the delta method with independent cells,

    Var p_k = Σ_j (∂p_k/∂x_j)² v_j,  ∂p_k/∂x_j = (δ_jk·S − x_k)/S²,
            = ((S − x_k)²·v_k + x_k²·(V − v_k)) / S⁴,  V = Σ_j v_j.
    """
    s = math.fsum(x)
    if s <= 0:
        return [None] * len(x)
    total_var = math.fsum(v)
    return [
        (xk / s, math.sqrt(max(0.0, (s - xk) ** 2 * vk + xk * xk * (total_var - vk))) / (s * s))
        for xk, vk in zip(x, v, strict=True)
    ]


def shares(
    spec: QuerySpec, estimate: MeasureEstimate, along: str, name: str | None = None
) -> RatioEstimate:
    """Each cell's share of its group: the cells that differ only in the dimension ``along``.

    For example, persons grouped by (age_band, first_visit) with along="first_visit" gives, per
    age band, the share of first-time and returning visitors. (``persons`` counts a person once
    per cell, so these are shares of person-cell pairs unless each person is in one cell of the
    group.) Groups whose total is not positive give None. Shares of noisy cells may fall outside
    [0, 1]; no post-processing is applied.
    """
    check_length(spec, estimate)
    pairs: list[tuple[float, float] | None] = [None] * spec.cell_count
    for group in _groups(spec, along):
        x = [float(estimate.estimates[k]) for k in group]
        v = [estimate.standard_errors[k] ** 2 for k in group]
        for k, pair in zip(group, _shares_of(x, v), strict=True):
            pairs[k] = pair
    measure = estimate.measure.value
    return ratio_estimate(
        name or f"{measure}_share_{along}", measure, f"{measure} summed over {along}", pairs
    )


def derived(spec: QuerySpec, measures: Sequence[MeasureEstimate]) -> tuple[RatioEstimate, ...]:
    """The derived quantities every result carries: ``mean_price`` (revenue per visit, in cents)
    when the query has both revenue and visits."""
    present = {estimate.measure for estimate in measures}
    if {Measure.REVENUE, Measure.VISITS} <= present:
        return (mean_per(spec, measures, Measure.REVENUE, Measure.VISITS, MEAN_PRICE),)
    return ()
