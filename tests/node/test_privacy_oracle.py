"""OpenDP as an oracle: the node's noise scale is never below what OpenDP's Polars context needs.

For the same contribution bounds, OpenDP's own sensitivity analysis (identifier-level privacy
unit, truncation, public keys) gives a noise scale per aggregate. The node computes its scales in
closed form (node.privacy.release.calibrations). If ours were smaller for any combination, the
node would under-noise: that is a privacy bug, and this test must then fail, not be loosened.

The equivalent OpenDP queries (see docs in opendp-notes §4):

* visits:  ``truncate_per_group(c)`` (≤ c rows per person in total),
           ``truncate_num_groups(g, by=KEYS)``, then ``dp.len(signed=True)`` per cell;
* revenue: the same truncation, then ``price.fill_null(0).dp.sum((lo, hi))``;
* persons: ``truncate_per_group(1, by=KEYS)``, ``truncate_num_groups(g_eff, by=KEYS)``,
           ``dp.len(signed=True)``, with g_eff = bounds.effective_cells_per_person.

Visits and revenue go in one query, so OpenDP splits its budget evenly over them exactly as the
node splits a query's cost over its measures; persons is a second query with its own share.

OpenDP's ``summarize()`` finds the scale by a binary search (1–4 s per query). The parametrised
test instead asks OpenDP's privacy map of ``make_private_lazyframe`` at a unit global scale and
solves for the budget in closed form (ρ ∝ 1/scale², ε ∝ 1/scale), then checks the resulting
measurement's map is within budget. ``test_fast_path_agrees_with_summarize`` shows that this
equals ``summarize()``.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

pl = pytest.importorskip("polars", reason="polars (opendp[polars]) is needed for the OpenDP oracle")

import opendp.prelude as dp  # noqa: E402
from opendp.measurements import make_private_lazyframe  # noqa: E402

from node.privacy.release import calibrations  # noqa: E402
from protocol.query import Bounds, Measure, Mechanism, Period, Privacy, QuerySpec  # noqa: E402

dp.enable_features("contrib")

V, P, R = Measure.VISITS, Measure.PERSONS, Measure.REVENUE
TOLERANCE = 1 - 1e-9


def _spec(
    c: int,
    g: int,
    lo: int,
    hi: int,
    cost: float,
    measures: tuple[Measure, ...],
    group_by: tuple[str, ...],
    mechanism: Mechanism = Mechanism.GAUSSIAN,
) -> QuerySpec:
    privacy = (
        Privacy(rho=cost)
        if mechanism is Mechanism.GAUSSIAN
        else Privacy(mechanism=Mechanism.LAPLACE, epsilon=cost)
    )
    return QuerySpec(
        query_id="oracle-query-1",
        period=Period(start=date(2025, 1, 1), end=date(2025, 12, 31)),
        group_by=group_by,
        measures=measures,
        bounds=Bounds(
            max_visits_per_person=c,
            max_cells_per_person=g,
            revenue_min_cents=lo,
            revenue_max_cents=hi,
        ),
        privacy=privacy,
    )


def _frames(spec: QuerySpec) -> tuple[Any, Any]:
    """A tiny data frame (content is irrelevant to the scale) and the public key set."""
    keys = list(spec.group_by)
    cells = list(spec.cells())
    key_columns = {k: [cell[i] for cell in cells] for i, k in enumerate(keys)}
    keys_lf = pl.LazyFrame(key_columns, schema={k: pl.String for k in keys})
    first, last = cells[0], cells[-1]
    data = pl.LazyFrame(
        {
            "pid": [1, 1, 2],
            **{k: [first[i], last[i], first[i]] for i, k in enumerate(keys)},
            "price": [100, None, 2500],
        },
        schema={"pid": pl.Int64, **{k: pl.String for k in keys}, "price": pl.Int64},
    )
    return data, keys_lf


def _queries(spec: QuerySpec) -> list[tuple[Any, float, dict[str, Measure]]]:
    """The OpenDP queries equivalent to ``spec``: (query, its budget, column → measure)."""
    keys = list(spec.group_by)
    bounds = spec.bounds
    c, g_eff = bounds.max_visits_per_person, bounds.effective_cells_per_person
    lo, hi = bounds.revenue_min_cents, bounds.revenue_max_cents
    gaussian = spec.privacy.mechanism is Mechanism.GAUSSIAN
    total = spec.privacy.rho if gaussian else spec.privacy.epsilon
    assert total is not None
    share = total / len(spec.measures)
    data, keys_lf = _frames(spec)
    context = dp.Context.compositor(
        data=data,
        privacy_unit=dp.unit_of(contributions=1, identifier="pid"),
        privacy_loss=dp.loss_of(rho=total) if gaussian else dp.loss_of(epsilon=total),
        margins=[dp.polars.Margin(max_length=1_000_000)],
    )

    def new_query(budget: float) -> Any:
        return context.query(rho=budget) if gaussian else context.query(epsilon=budget)

    out: list[tuple[Any, float, dict[str, Measure]]] = []
    row_measures = [m for m in spec.measures if m is not P]
    if row_measures:
        aggregates = []
        columns: dict[str, Measure] = {}
        for measure in row_measures:
            if measure is V:
                aggregates.append(dp.len(signed=True))
                columns["len"] = V
            else:
                aggregates.append(pl.col("price").fill_null(0).dp.sum((lo, hi)))
                columns["price"] = R
        budget = share * len(row_measures)
        query = (
            new_query(budget)
            .truncate_per_group(c)
            .truncate_num_groups(g_eff, by=keys, keep="first")
            .group_by(keys)
            .agg(*aggregates)
            .with_keys(keys_lf)
        )
        out.append((query, budget, columns))
    if P in spec.measures:
        query = (
            new_query(share)
            .truncate_per_group(1, by=keys)
            .truncate_num_groups(g_eff, by=keys, keep="first")
            .group_by(keys)
            .agg(dp.len(signed=True))
            .with_keys(keys_lf)
        )
        out.append((query, share, {"len": P}))
    return out


def _scales_fast(query: Any, budget: float, gaussian: bool) -> dict[str, float]:
    """OpenDP's scales at ``budget`` from its own privacy map, solved in closed form."""
    domain, metric = query._query._chain  # private in opendp 0.16; see opendp-notes §4
    measure = dp.zero_concentrated_divergence() if gaussian else dp.max_divergence()

    def build(global_scale: float) -> Any:
        return make_private_lazyframe(
            domain, metric, measure, query.polars_plan, global_scale=global_scale
        )

    unit = float(build(1.0).map(1))
    scale = math.sqrt(unit / budget) if gaussian else unit / budget
    measurement = build(scale)
    spent = float(measurement.map(1))
    if spent > budget:  # float rounding: nudge up until OpenDP's map is within budget
        measurement = build(scale * (1 + 1e-12))
        spent = float(measurement.map(1))
    assert spent <= budget
    summary = dp.summarize_polars_measurement(measurement)
    return _by_column(summary)


def _by_column(summary: Any) -> dict[str, float]:
    return {row["column"]: float(row["scale"]) for row in summary.iter_rows(named=True)}


def _assert_ours_at_least_opendp(spec: QuerySpec, opendp_scales: dict[Measure, float]) -> None:
    ours = {m: cal.scale for m, cal in calibrations(spec).items()}
    assert set(opendp_scales) == set(spec.measures)
    for measure, theirs in opendp_scales.items():
        assert ours[measure] >= theirs * TOLERANCE, (
            f"PRIVACY BUG: the node's {measure} scale {ours[measure]} is below OpenDP's {theirs} "
            f"for bounds {spec.bounds} and {spec.privacy}"
        )


COMBOS = [
    # (c, g, lo, hi, cost, measures, group_by)
    (10, 10, 0, 10_000, 0.1, (V, P, R), ("month", "artform")),
    (12, 1, 0, 15_000, 0.05, (P, V), ("province",)),
    (3, 8, -500, 200, 0.5, (V, P, R), ("age_band",)),  # g > c: g_eff = c
    (1, 1, 0, 100, 1.0, (R, V, P), ("first_visit", "channel")),
    (50, 7, -10_000, 10_000, 0.01, (V, R), ("price_type", "channel")),
    (6, 2, 250, 9_000, 2.0, (R,), ("weekday",)),
    (1000, 1000, -10_000_000, 10_000_000, 10.0, (P, R), ("lead_time",)),
    (12, 4, 0, 15_000, 1e-3, (V,), ("artform", "age_band", "quarter")),
]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: f"c{c[0]}-g{c[1]}-{c[2]}..{c[3]}-{c[4]}")
@pytest.mark.parametrize("mechanism", [Mechanism.GAUSSIAN, Mechanism.LAPLACE])
def test_node_scale_at_least_opendp(combo: tuple[Any, ...], mechanism: Mechanism) -> None:
    spec = _spec(*combo, mechanism=mechanism)
    gaussian = mechanism is Mechanism.GAUSSIAN
    theirs: dict[Measure, float] = {}
    for query, budget, columns in _queries(spec):
        scales = _scales_fast(query, budget, gaussian)
        assert set(scales) == set(columns)
        for column, measure in columns.items():
            theirs[measure] = scales[column]
    _assert_ours_at_least_opendp(spec, theirs)


@pytest.mark.parametrize(
    ("combo", "mechanism"),
    [
        ((5, 3, 0, 1000, 0.5, (V, P, R), ("artform", "age_band")), Mechanism.GAUSSIAN),
        ((12, 2, -300, 5000, 0.3, (V, R), ("age_band",)), Mechanism.LAPLACE),
    ],
)
def test_fast_path_agrees_with_summarize(combo: tuple[Any, ...], mechanism: Mechanism) -> None:
    spec = _spec(*combo, mechanism=mechanism)
    gaussian = mechanism is Mechanism.GAUSSIAN
    theirs: dict[Measure, float] = {}
    for query, budget, columns in _queries(spec):
        searched = _by_column(query.summarize())
        fast = _scales_fast(query, budget, gaussian)
        for column, measure in columns.items():
            assert fast[column] == pytest.approx(searched[column], rel=1e-6)
            theirs[measure] = searched[column]
    _assert_ours_at_least_opendp(spec, theirs)
