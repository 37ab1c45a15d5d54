"""Merging answers: exact sums, variances, intervals, means and shares (aggregator/merge.py).

Property tests check the algebra on arbitrary inputs; the delta-method standard errors are checked
against a finite-difference gradient and against a seeded Monte Carlo simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.merge import merge_measures
from protocol.http import MAX_SAFE_INTEGER
from protocol.messages import BudgetStatus, MeasureResult, PrivacySpent, QueryAnswer
from protocol.query import Measure, Mechanism, Period, Privacy, QuerySpec
from protocol.ratios import MEAN_PRICE, derived, mean_per, ratio, shares
from protocol.results import Z95, MeasureEstimate

ALL = (Measure.VISITS, Measure.PERSONS, Measure.REVENUE)
PROPERTY = settings(max_examples=40, deadline=None)


# -- factories ----------------------------------------------------------------------------------


def make_spec(
    group_by: tuple[str, ...] = ("age_band", "first_visit"),
    measures: tuple[Measure, ...] = ALL,
    **fields: Any,
) -> QuerySpec:
    fields.setdefault("period", Period(start=date(2025, 1, 1), end=date(2025, 12, 31)))
    fields.setdefault("privacy", Privacy(rho=0.1))
    return QuerySpec(query_id="merge-test-1", group_by=group_by, measures=measures, **fields)


def make_answer(
    spec: QuerySpec,
    values: Mapping[Measure, Sequence[int]],
    noise_sd: float | Mapping[Measure, float] = 10.0,
    **overrides: Any,
) -> QueryAnswer:
    """A node's answer with the given released values (and noise sd) per measure."""
    sds = noise_sd if isinstance(noise_sd, Mapping) else dict.fromkeys(values, noise_sd)
    results = tuple(
        MeasureResult(
            measure=measure,
            values=tuple(vals),
            mechanism=Mechanism.GAUSSIAN if sds[measure] > 0 else None,
            scale=sds[measure],
            noise_sd=sds[measure],
            sensitivity_l1=1.0,
            sensitivity_l2=1.0,
            rho=0.01,
        )
        for measure, vals in values.items()
    )
    fields: dict[str, Any] = {
        "query_id": spec.query_id,
        "query_hash": spec.digest(),
        "catalogue_version": spec.catalogue_version,
        "answered_at": datetime(2026, 1, 5, tzinfo=UTC),
        "group_by": spec.group_by,
        "cells": tuple(spec.cells()),
        "measures": results,
        "privacy": PrivacySpent(rho=0.03, epsilon=1.0, delta=1e-7),
        "budget": BudgetStatus(period="2026", cap_rho=1.0, spent_rho=0.03),
    }
    fields.update(overrides)
    return QueryAnswer(**fields)


def make_estimate(
    measure: Measure, estimates: Sequence[int], standard_errors: Sequence[float]
) -> MeasureEstimate:
    return MeasureEstimate(
        measure=measure,
        estimates=tuple(estimates),
        standard_errors=tuple(standard_errors),
        lower=tuple(x - Z95 * s for x, s in zip(estimates, standard_errors, strict=True)),
        upper=tuple(x + Z95 * s for x, s in zip(estimates, standard_errors, strict=True)),
    )


SPECS = (
    make_spec(group_by=()),
    make_spec(group_by=("first_visit",), measures=(Measure.PERSONS,)),
    make_spec(),
    make_spec(group_by=("channel", "first_visit", "age_band"), measures=(Measure.REVENUE,)),
)
# The largest value a message may carry (protocol.messages.SafeInt); sums of several go beyond
# 53 bits, where floats would round: they must stay exact.
BIG = MAX_SAFE_INTEGER


@st.composite
def rounds(draw: st.DrawFn) -> tuple[QuerySpec, list[QueryAnswer]]:
    """A spec and 1–6 answers with arbitrary values and noise sds."""
    spec = draw(st.sampled_from(SPECS))
    n = spec.cell_count
    answers = []
    for _ in range(draw(st.integers(1, 6))):
        values = {m: draw(st.lists(st.integers(-BIG, BIG), min_size=n, max_size=n)) for m in ALL}
        sds = {m: draw(st.just(0.0) | st.floats(1e-3, 1e12)) for m in ALL}
        answers.append(
            make_answer(spec, {m: values[m] for m in spec.measures}, sds)  # spec's measures only
        )
    return spec, answers


# -- merge_measures -----------------------------------------------------------------------------


@PROPERTY
@given(rounds())
def test_estimate_is_the_exact_sum_and_variance_the_sum_of_variances(
    case: tuple[QuerySpec, list[QueryAnswer]],
) -> None:
    spec, answers = case
    merged = merge_measures(spec, answers)
    assert [e.measure for e in merged] == list(spec.measures)
    for estimate in merged:
        results = [a.measure(estimate.measure) for a in answers]
        for k, total in enumerate(estimate.estimates):
            assert type(total) is int
            assert total == sum(r.values[k] for r in results)
        variance = sum(r.noise_sd**2 for r in results)
        for k, se in enumerate(estimate.standard_errors):
            assert math.isclose(se**2, variance, rel_tol=1e-12, abs_tol=1e-300)
            assert estimate.lower[k] == estimate.estimates[k] - Z95 * se
            assert estimate.upper[k] == estimate.estimates[k] + Z95 * se


@PROPERTY
@given(rounds())
def test_one_answer_merges_to_itself(case: tuple[QuerySpec, list[QueryAnswer]]) -> None:
    spec, answers = case
    (only,) = answers[:1]
    for estimate in merge_measures(spec, [only]):
        result = only.measure(estimate.measure)
        assert estimate.estimates == result.values
        assert set(estimate.standard_errors) == {result.noise_sd}


@PROPERTY
@given(rounds(), st.randoms(use_true_random=False))
def test_order_of_answers_does_not_matter(
    case: tuple[QuerySpec, list[QueryAnswer]], rnd: Any
) -> None:
    spec, answers = case
    shuffled = list(answers)
    rnd.shuffle(shuffled)
    assert merge_measures(spec, shuffled) == merge_measures(spec, answers)


def test_zero_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="zero answers"):
        merge_measures(make_spec(), [])


def _values(spec: QuerySpec, n: int | None = None) -> dict[Measure, list[int]]:
    return {m: [1] * (spec.cell_count if n is None else n) for m in spec.measures}


SPEC = make_spec(measures=(Measure.VISITS, Measure.PERSONS))
OTHER = make_spec(group_by=("first_visit", "age_band"))


def _unvalidated_sd(sd: float) -> QueryAnswer:
    good = make_answer(SPEC, _values(SPEC))
    measures = tuple(m.model_copy(update={"noise_sd": sd}) for m in good.measures)
    return good.model_copy(update={"measures": measures})


MISMATCHES: dict[str, tuple[Callable[[], QueryAnswer], str]] = {
    "group_by": (
        lambda: make_answer(SPEC, _values(SPEC), group_by=OTHER.group_by),
        "groups by",
    ),
    "cell order": (
        lambda: make_answer(SPEC, _values(SPEC), cells=tuple(OTHER.cells())),
        "canonical order",
    ),
    "missing cell": (
        lambda: make_answer(SPEC, _values(SPEC), cells=tuple(SPEC.cells())[:-1]),
        "canonical order",
    ),
    "missing measure": (
        lambda: make_answer(SPEC, {Measure.VISITS: [1] * SPEC.cell_count}),
        "measures",
    ),
    "repeated measure": (
        lambda: make_answer(
            SPEC, _values(SPEC), measures=make_answer(SPEC, _values(SPEC)).measures * 2
        ),
        "measures",
    ),
    "extra measure": (
        lambda: make_answer(SPEC, {m: [1] * SPEC.cell_count for m in ALL}),
        "measures",
    ),
    "short values": (lambda: make_answer(SPEC, _values(SPEC, 17)), "17 visits values"),
    "long values": (lambda: make_answer(SPEC, _values(SPEC, 19)), "19 visits values"),
    # Messages refuse NaN and infinite floats; merge_measures still checks, for answers built
    # without validation.
    "nan sd": (lambda: _unvalidated_sd(math.nan), "noise_sd"),
    "infinite sd": (lambda: _unvalidated_sd(math.inf), "noise_sd"),
    "negative sd": (lambda: make_answer(SPEC, _values(SPEC), -1.0), "noise_sd"),
}


@pytest.mark.parametrize("case", MISMATCHES, ids=str)
def test_an_answer_that_does_not_match_the_spec_is_refused(case: str) -> None:
    build, message = MISMATCHES[case]
    good = make_answer(SPEC, _values(SPEC))
    with pytest.raises(ValueError, match=message) as info:
        merge_measures(SPEC, [good, build()])
    assert "answer 1" in str(info.value)


# -- ratio and mean_per -------------------------------------------------------------------------


@PROPERTY
@given(
    st.floats(-1e12, 1e12),
    st.floats(0, 1e12),
    st.floats(-1e12, 0),
    st.floats(0, 1e12),
)
def test_ratio_is_none_when_the_denominator_is_not_positive(
    a: float, va: float, b: float, vb: float
) -> None:
    assert ratio(a, va, b, vb) is None


@PROPERTY
@given(
    st.floats(-1e9, 1e9),
    st.floats(0, 1e9),
    st.floats(1e-3, 1e9),
    st.floats(0, 1e9),
)
def test_ratio_matches_the_delta_method_formula(a: float, va: float, b: float, vb: float) -> None:
    result = ratio(a, va, b, vb)
    assert result is not None
    r, se = result
    assert r == a / b
    # gradient (1/B, −A/B²) against the variances (Var A, Var B)
    assert math.isclose(se**2, va / b**2 + vb * a**2 / b**4, rel_tol=1e-9, abs_tol=1e-300)


def test_mean_per_cell_and_none_where_visits_are_not_positive() -> None:
    spec = make_spec(group_by=("first_visit",))
    revenue = make_estimate(Measure.REVENUE, [250_000, 1_000, 7], [3000.0] * 3)
    visits = make_estimate(Measure.VISITS, [100, 0, -4], [20.0] * 3)
    mean = mean_per(spec, [visits, revenue], Measure.REVENUE, Measure.VISITS, "price")
    assert (mean.name, mean.numerator, mean.denominator) == ("price", "revenue", "visits")
    assert mean.estimates == (2500.0, None, None)
    expected_se = math.sqrt(3000.0**2 + 2500.0**2 * 20.0**2) / 100
    assert mean.standard_errors[0] == pytest.approx(expected_se, rel=1e-12)
    assert mean.lower[0] == pytest.approx(2500 - Z95 * expected_se)
    assert mean.upper[0] == pytest.approx(2500 + Z95 * expected_se)
    assert mean.standard_errors[1:] == mean.lower[1:] == mean.upper[1:] == (None, None)


def test_mean_per_needs_both_measures_and_the_spec_cells() -> None:
    spec = make_spec(group_by=("first_visit",))
    visits = make_estimate(Measure.VISITS, [1, 2, 3], [1.0] * 3)
    with pytest.raises(ValueError, match="revenue"):
        mean_per(spec, [visits], Measure.REVENUE, Measure.VISITS, "price")
    short = make_estimate(Measure.REVENUE, [1, 2], [1.0] * 2)
    with pytest.raises(ValueError, match="2 cells"):
        mean_per(spec, [visits, short], Measure.REVENUE, Measure.VISITS, "price")


def test_derived_carries_mean_price_only_with_revenue_and_visits() -> None:
    spec = make_spec(group_by=("first_visit",))
    answers = [make_answer(spec, {m: [10, 20, 30] for m in ALL}) for _ in range(3)]
    merged = merge_measures(spec, answers)
    (mean,) = derived(spec, merged)
    assert mean.name == MEAN_PRICE
    assert mean == mean_per(spec, merged, Measure.REVENUE, Measure.VISITS, MEAN_PRICE)
    for measures in [(Measure.VISITS,), (Measure.REVENUE, Measure.PERSONS), (Measure.PERSONS,)]:
        partial = make_spec(group_by=("first_visit",), measures=measures)
        values = {m: [10, 20, 30] for m in measures}
        assert derived(partial, merge_measures(partial, [make_answer(partial, values)])) == ()


# -- shares -------------------------------------------------------------------------------------


def test_shares_group_the_cells_that_differ_only_along_the_dimension() -> None:
    spec = make_spec(group_by=("first_visit", "channel"))  # 3 × 6 cells, channel fastest
    x = list(range(1, 19))
    estimate = make_estimate(Measure.PERSONS, x, [0.0] * 18)
    by_channel = shares(spec, estimate, "channel")
    assert by_channel.estimates[:6] == tuple(v / 21 for v in x[:6])  # 1 + … + 6
    by_first = shares(spec, estimate, "first_visit")
    assert by_first.estimates[0::6] == (1 / 21, 7 / 21, 13 / 21)  # channel 'online': 1, 7, 13
    assert by_first.estimates[5::6] == (6 / 36, 12 / 36, 18 / 36)
    assert by_first.name == "persons_share_first_visit"
    assert by_first.numerator == "persons"
    assert shares(spec, estimate, "channel", name="x").name == "x"


@st.composite
def share_cases(draw: st.DrawFn) -> tuple[QuerySpec, MeasureEstimate, str]:
    spec = draw(st.sampled_from(SPECS[1:]))
    n = spec.cell_count
    values = draw(st.lists(st.integers(-1000, 10**9), min_size=n, max_size=n))
    ses = draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n))
    along = draw(st.sampled_from(spec.group_by))
    return spec, make_estimate(Measure.PERSONS, values, ses), along


def _groups_of(spec: QuerySpec, along: str) -> dict[tuple[str, ...], list[int]]:
    position = spec.group_by.index(along)
    groups: dict[tuple[str, ...], list[int]] = {}
    for k, cell in enumerate(spec.cells()):
        groups.setdefault(cell[:position] + cell[position + 1 :], []).append(k)
    return groups


@PROPERTY
@given(share_cases())
def test_shares_in_a_group_sum_to_one_or_are_all_none(
    case: tuple[QuerySpec, MeasureEstimate, str],
) -> None:
    spec, estimate, along = case
    result = shares(spec, estimate, along)
    for members in _groups_of(spec, along).values():
        total = sum(estimate.estimates[k] for k in members)
        got = [result.estimates[k] for k in members]
        if total <= 0:
            assert got == [None] * len(members)
            assert [result.standard_errors[k] for k in members] == [None] * len(members)
        else:
            assert math.fsum(p for p in got if p is not None) == pytest.approx(1.0, abs=1e-9)
            for k in members:
                assert result.estimates[k] == estimate.estimates[k] / total


def test_shares_need_a_group_by_dimension() -> None:
    spec = make_spec(group_by=("first_visit",))
    estimate = make_estimate(Measure.PERSONS, [1, 2, 3], [1.0] * 3)
    with pytest.raises(ValueError, match="age_band"):
        shares(spec, estimate, "age_band")


# -- the delta method against finite differences and Monte Carlo ---------------------------------


def _jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Central differences, column j = ∂f/∂x_j."""
    columns = []
    for j in range(len(x)):
        h = 1e-4 * max(1.0, abs(float(x[j])))
        step = np.zeros_like(x)
        step[j] = h
        columns.append((f(x + step) - f(x - step)) / (2 * h))
    return np.stack(columns, axis=1)


def test_share_standard_errors_match_a_finite_difference_gradient() -> None:
    spec = make_spec(group_by=("age_band",))
    x = np.array([1200.0, 800.0, 350.0, 90.0, 40.0, 15.0])
    sd = np.array([30.0, 10.0, 25.0, 5.0, 8.0, 12.0])
    result = shares(spec, make_estimate(Measure.PERSONS, [int(v) for v in x], list(sd)), "age_band")
    jac = _jacobian(lambda v: v / v.sum(), x)
    expected = np.sqrt((jac**2) @ (sd**2))
    assert result.standard_errors == pytest.approx(expected.tolist(), rel=1e-6)


def test_share_standard_errors_match_monte_carlo() -> None:
    spec = make_spec(group_by=("first_visit",))
    truth = np.array([600.0, 300.0, 100.0])
    sd = np.array([15.0, 15.0, 15.0])
    rng = np.random.default_rng(20260105)
    draws = truth + rng.normal(0.0, sd, size=(200_000, 3))
    simulated = (draws / draws.sum(axis=1, keepdims=True)).std(axis=0)
    result = shares(spec, make_estimate(Measure.PERSONS, [600, 300, 100], list(sd)), "first_visit")
    # Monte Carlo error of an sd from 200,000 draws is about 0.16%; delta-method bias ~0.1% here.
    assert result.standard_errors == pytest.approx(simulated.tolist(), rel=0.01)


def test_mean_standard_error_matches_monte_carlo() -> None:
    rng = np.random.default_rng(20260106)
    a, sa, b, sb = 2_500_000.0, 30_000.0, 1_000.0, 20.0
    draws = (a + rng.normal(0.0, sa, 200_000)) / (b + rng.normal(0.0, sb, 200_000))
    result = ratio(a, sa**2, b, sb**2)
    assert result is not None
    assert result[1] == pytest.approx(float(draws.std()), rel=0.01)
