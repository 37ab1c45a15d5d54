"""Sensitivities, calibration, and the distribution of the noise that the node releases.

Why alpha = 1e-6 instead of a seed
----------------------------------
OpenDP draws noise from a cryptographically seeded sampler (OpenSSL ``RAND_priv_bytes``) that
cannot be seeded, and it must not be: a seedable noise source is a privacy bug. So the
statistical tests below see fresh noise on every run. They are made non-flaky by design rather
than by a seed:

* each test draws a large sample (``N`` values) through the node's own ``add_noise``;
* goodness of fit is checked against the *exact* pmf of the discrete Gaussian / discrete Laplace
  (χ² with merged bins, and a Kolmogorov–Smirnov statistic on the CDF, whose continuous p-value is
  conservative for a discrete law), and mean / variance / correlation with z-tests;
* each test passes when p > ALPHA = 1e-6, so a correct sampler fails a given test about once in a
  million runs;
* each goodness-of-fit test also proves its power: the same sample, judged against the law at a
  scale 10% too large or too small, must give p < ALPHA. (At N = 200,000 those p-values are
  astronomically small, so this half cannot fail by chance either.)

NumPy generators used to build *inputs* are seeded.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from node.privacy.noise import (
    Calibration,
    add_noise,
    calibrate_gaussian,
    calibrate_laplace,
    noise_sd,
    zcdp_to_epsilon,
)
from node.privacy.release import calibrations, privacy_spent, release
from protocol.query import Bounds, Measure, Mechanism, Period, Privacy, QuerySpec
from protocol.sensitivity import Sensitivity, sensitivity

ALPHA = 1e-6
Z_CRIT = float(stats.norm.isf(ALPHA / 2))  # two-sided z bound, about 4.89
N = 200_000
VECTOR = dp.vector_domain(dp.atom_domain(T="i64"))


# -- exact laws ---------------------------------------------------------------------------


def exact_pmf(mechanism: Mechanism, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf over a range wide enough that the mass outside is below 1e-30."""
    if mechanism is Mechanism.GAUSSIAN:
        half = math.ceil(12 * scale) + 5
        support = np.arange(-half, half + 1)
        log_w = -(support.astype(float) ** 2) / (2 * scale * scale)
    else:
        half = math.ceil(70 * scale) + 5
        support = np.arange(-half, half + 1)
        log_w = -np.abs(support).astype(float) / scale
    weights = np.exp(log_w - log_w.max())
    return support, weights / weights.sum()


def exact_moments(mechanism: Mechanism, scale: float) -> tuple[float, float]:
    """Variance and fourth moment (the mean is 0 by symmetry)."""
    support, pmf = exact_pmf(mechanism, scale)
    k = support.astype(float)
    return float(np.sum(k**2 * pmf)), float(np.sum(k**4 * pmf))


def counts_on(support: np.ndarray, sample: np.ndarray) -> np.ndarray:
    lo, hi = int(support[0]), int(support[-1])
    assert sample.min() >= lo and sample.max() <= hi, "noise far outside the law's support"
    return np.bincount(sample - lo, minlength=hi - lo + 1)


def chi2_pvalue(sample: np.ndarray, mechanism: Mechanism, scale: float) -> float:
    """χ² goodness of fit: one bin per integer with expected count ≥ 5, tails pooled."""
    support, pmf = exact_pmf(mechanism, scale)
    observed = counts_on(support, sample).astype(float)
    expected = len(sample) * pmf
    big = np.flatnonzero(expected >= 5)
    a, b = int(big[0]), int(big[-1])  # contiguous: the pmf is unimodal
    if expected[:a].sum() < 5:
        a += 1  # fold the left tail into the first interior bin
    if expected[b + 1 :].sum() < 5:
        b -= 1
    obs = np.concatenate(([observed[:a].sum()], observed[a : b + 1], [observed[b + 1 :].sum()]))
    exp = np.concatenate(([expected[:a].sum()], expected[a : b + 1], [expected[b + 1 :].sum()]))
    assert exp.min() >= 5 and len(exp) >= 3
    exp *= obs.sum() / exp.sum()  # remove rounding drift (mass outside the support is < 1e-30)
    return float(stats.chisquare(obs, exp).pvalue)


def ks_pvalue(sample: np.ndarray, mechanism: Mechanism, scale: float) -> float:
    """Kolmogorov–Smirnov on the integer CDF (the continuous p-value is conservative here)."""
    support, pmf = exact_pmf(mechanism, scale)
    empirical = np.cumsum(counts_on(support, sample)) / len(sample)
    distance = float(np.max(np.abs(empirical - np.cumsum(pmf))))
    return float(stats.kstwo.sf(distance, len(sample)))


# -- samples (drawn once per module through the node's own add_noise) ---------------------

# Real calibrations: (mechanism, sensitivity, cost) → the scale the node would use.
CASES = {
    # persons with g = 5 at ρ = 0.4: σ = √5/√0.8 = 2.5 (below 4, where the lattice matters)
    "gauss-2.5": (Mechanism.GAUSSIAN, Sensitivity(5.0, math.sqrt(5)), 0.4),
    # visits with c = 15 at ρ = 0.2: σ = 15/√0.4 ≈ 23.72
    "gauss-23.7": (Mechanism.GAUSSIAN, Sensitivity(15.0, 15.0), 0.2),
    # persons with g = 2 at ε = 1.25: b = 1.6
    "laplace-1.6": (Mechanism.LAPLACE, Sensitivity(2.0, math.sqrt(2)), 1.25),
    # visits with c = 12 at ε = 1: b = 12
    "laplace-12": (Mechanism.LAPLACE, Sensitivity(12.0, 12.0), 1.0),
}


def calibration_for(case: str) -> Calibration:
    mechanism, sens, cost = CASES[case]
    if mechanism is Mechanism.GAUSSIAN:
        return calibrate_gaussian(sens, cost)
    return calibrate_laplace(sens, cost)


@cache
def noisy_sample(case: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, noise) for N cells: the inputs are seeded random counts, noise = output − input."""
    rng = np.random.default_rng(sum(map(ord, case)))
    inputs = rng.integers(-(10**6), 10**6, size=N)
    released = add_noise(inputs.tolist(), calibration_for(case))
    assert len(released) == N
    assert all(type(v) is int for v in released[:1000])
    return inputs, np.asarray(released, dtype=np.int64) - inputs


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_noise_fits_the_exact_law_chi2(case: str) -> None:
    cal = calibration_for(case)
    _, noise = noisy_sample(case)
    p = chi2_pvalue(noise, cal.mechanism, cal.scale)
    assert p > ALPHA, f"χ² rejects the exact {cal.mechanism} law at scale {cal.scale}: p={p}"
    for wrong in (cal.scale * 1.1, cal.scale / 1.1):
        p_wrong = chi2_pvalue(noise, cal.mechanism, wrong)
        assert p_wrong < ALPHA, f"χ² has no power against scale {wrong}: p={p_wrong}"


def test_noise_fits_the_exact_law_ks(case: str) -> None:
    cal = calibration_for(case)
    _, noise = noisy_sample(case)
    p = ks_pvalue(noise, cal.mechanism, cal.scale)
    assert p > ALPHA, f"KS rejects the exact {cal.mechanism} law at scale {cal.scale}: p={p}"
    for wrong in (cal.scale * 1.1, cal.scale / 1.1):
        p_wrong = ks_pvalue(noise, cal.mechanism, wrong)
        assert p_wrong < ALPHA, f"KS has no power against scale {wrong}: p={p_wrong}"


def test_noise_mean_and_sd(case: str) -> None:
    cal = calibration_for(case)
    _, noise = noisy_sample(case)
    var, fourth = exact_moments(cal.mechanism, cal.scale)
    assert cal.noise_sd == pytest.approx(math.sqrt(var), rel=1e-9)
    x = noise.astype(float)
    z_mean = x.mean() / math.sqrt(var / N)
    assert abs(z_mean) < Z_CRIT, f"mean {x.mean()} is off zero (z={z_mean})"
    second = float(np.mean(x**2))
    z_var = (second - var) / math.sqrt((fourth - var**2) / N)
    assert abs(z_var) < Z_CRIT, f"sd {math.sqrt(second)} vs noise_sd {cal.noise_sd} (z={z_var})"
    # Power: the same check refuses a variance 10% off in scale.
    for wrong_scale in (cal.scale * 1.1, cal.scale / 1.1):
        wrong_var, wrong_fourth = exact_moments(cal.mechanism, wrong_scale)
        z_wrong = (second - wrong_var) / math.sqrt((wrong_fourth - wrong_var**2) / N)
        assert abs(z_wrong) > Z_CRIT


def test_noise_is_independent_per_cell_and_of_the_values(case: str) -> None:
    inputs, noise = noisy_sample(case)
    x = noise.astype(float)
    for lag in (1, 2, 7):
        r = np.corrcoef(x[:-lag], x[lag:])[0, 1]
        assert abs(r) * math.sqrt(N - lag) < Z_CRIT, f"lag-{lag} correlation {r}"
    r_values = np.corrcoef(x, inputs.astype(float))[0, 1]
    assert abs(r_values) * math.sqrt(N) < Z_CRIT, f"noise correlates with the values: {r_values}"
    r_size = np.corrcoef(np.abs(x), np.abs(inputs.astype(float)))[0, 1]
    assert abs(r_size) * math.sqrt(N) < Z_CRIT, f"noise size depends on the values: {r_size}"


def test_add_noise_keeps_order_and_length() -> None:
    cal = calibrate_gaussian(Sensitivity(1.0, 1.0), 2.0)  # σ = 0.5: noise is mostly 0 or ±1
    values = [0, 10**6, -(10**6), 5, 2**40]
    released = add_noise(values, cal)
    assert len(released) == len(values)
    assert all(type(v) is int for v in released)
    assert all(abs(out - v) < 20 for out, v in zip(released, values, strict=True))
    assert add_noise([], cal) == []


# -- sensitivities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "visits", "persons", "revenue"),
    [
        # c = 10, g = 4, M = 5000
        (Bounds(max_visits_per_person=10, max_cells_per_person=4, revenue_max_cents=5000),
         (10, 10), (4, 2.0), (50_000, 50_000)),
        # g > c: a person keeps 3 rows, so touches at most 3 cells
        (Bounds(max_visits_per_person=3, max_cells_per_person=8),
         (3, 3), (3, math.sqrt(3)), (30_000, 30_000)),
        # negative lower clamp dominates: M = max(|−7000|, |2000|) = 7000
        (Bounds(max_visits_per_person=2, max_cells_per_person=2, revenue_min_cents=-7000,
                revenue_max_cents=2000),
         (2, 2), (2, math.sqrt(2)), (14_000, 14_000)),
        # all positive clamp: M = hi
        (Bounds(max_visits_per_person=1, max_cells_per_person=1, revenue_min_cents=100,
                revenue_max_cents=250),
         (1, 1), (1, 1.0), (250, 250)),
        (Bounds(max_visits_per_person=12, max_cells_per_person=12, revenue_max_cents=15_000),
         (12, 12), (12, math.sqrt(12)), (180_000, 180_000)),
    ],
)  # fmt: skip
def test_sensitivity_hand_computed(
    bounds: Bounds,
    visits: tuple[float, float],
    persons: tuple[float, float],
    revenue: tuple[float, float],
) -> None:
    for measure, (l1, l2) in (
        (Measure.VISITS, visits),
        (Measure.PERSONS, persons),
        (Measure.REVENUE, revenue),
    ):
        sens = sensitivity(measure, bounds)
        assert sens.l1 == pytest.approx(l1, rel=1e-12), measure
        assert sens.l2 == pytest.approx(l2, rel=1e-12), measure


@settings(max_examples=200, deadline=None)
@given(
    c=st.integers(1, 12),
    g=st.integers(1, 12),
    lo=st.integers(-5000, 5000),
    width=st.integers(0, 10_000),
    rows=st.lists(st.tuples(st.integers(0, 9), st.integers(-20_000, 20_000)), max_size=40),
)
def test_one_persons_bounded_contribution_is_within_the_sensitivity(
    c: int, g: int, lo: int, width: int, rows: list[tuple[int, int]]
) -> None:
    """Any c rows of one person in any g cells, with clamped prices, stay within Δ₁ and Δ₂."""
    hi = lo + width
    bounds = Bounds(
        max_visits_per_person=c, max_cells_per_person=g, revenue_min_cents=lo, revenue_max_cents=hi
    )
    kept = rows[:c]  # any choice of at most c rows …
    cells = list(dict.fromkeys(cell for cell, _ in kept))[:g]  # … in at most g cells
    kept = [(cell, price) for cell, price in kept if cell in cells]
    visits = np.zeros(10)
    persons = np.zeros(10)
    revenue = np.zeros(10)
    for cell, price in kept:
        visits[cell] += 1
        persons[cell] = 1
        revenue[cell] += min(max(price, lo), hi)
    for measure, vector in (
        (Measure.VISITS, visits),
        (Measure.PERSONS, persons),
        (Measure.REVENUE, revenue),
    ):
        sens = sensitivity(measure, bounds)
        assert np.abs(vector).sum() <= sens.l1 + 1e-9
        assert np.sqrt((vector**2).sum()) <= sens.l2 * (1 + 1e-12) + 1e-9
        assert sens.l2 <= sens.l1


# -- calibration --------------------------------------------------------------------------

SENSITIVITIES = [
    Sensitivity(1.0, 1.0),
    Sensitivity(12.0, math.sqrt(12)),
    Sensitivity(10.0, 10.0),
    Sensitivity(180_000.0, 180_000.0),
    Sensitivity(1e10, 1e10),  # c = 1000 at the maximum clamp of 10^7 cents
]
COSTS = [1e-4, 1 / 30, 0.1, 0.5, 10.0]


@pytest.mark.parametrize("sens", SENSITIVITIES, ids=str)
@pytest.mark.parametrize("rho", COSTS)
def test_calibrate_gaussian(sens: Sensitivity, rho: float) -> None:
    cal = calibrate_gaussian(sens, rho)
    assert cal.mechanism is Mechanism.GAUSSIAN and cal.epsilon is None and cal.rho == rho
    assert cal.sensitivity == sens
    assert cal.scale == pytest.approx(sens.l2 / math.sqrt(2 * rho), rel=1e-6)
    assert sens.l2**2 / (2 * cal.scale**2) <= rho  # never below the closed form
    measurement = dp.m.make_gaussian(VECTOR, dp.l2_distance(T="f64"), scale=cal.scale)
    assert measurement.map(sens.l2) <= rho


@pytest.mark.parametrize("sens", SENSITIVITIES, ids=str)
@pytest.mark.parametrize("epsilon", COSTS)
def test_calibrate_laplace(sens: Sensitivity, epsilon: float) -> None:
    cal = calibrate_laplace(sens, epsilon)
    assert cal.mechanism is Mechanism.LAPLACE and cal.epsilon == epsilon
    assert cal.rho == pytest.approx(epsilon**2 / 2, rel=1e-12)
    assert cal.scale == pytest.approx(sens.l1 / epsilon, rel=1e-6)
    assert sens.l1 / cal.scale <= epsilon
    measurement = dp.m.make_laplace(VECTOR, dp.l1_distance(T="i64"), scale=cal.scale)
    assert measurement.map(math.ceil(sens.l1)) <= epsilon


# -- noise_sd against an independent numerical computation --------------------------------


def numeric_sd(mechanism: Mechanism, scale: float) -> float:
    """Direct sum over a wide support, in NumPy; shares no code with noise_sd."""
    half = math.ceil((40 if mechanism is Mechanism.GAUSSIAN else 80) * scale) + 10
    k = np.arange(-half, half + 1, dtype=float)
    if mechanism is Mechanism.GAUSSIAN:
        w = np.exp(-(k**2) / (2 * scale**2))
    else:
        w = np.exp(-np.abs(k) / scale)
    return float(np.sqrt(np.sum(k**2 * w) / np.sum(w)))


@pytest.mark.parametrize("scale", [0.2, 0.3, 0.5, 0.8, 1.0, 1.7, 2.5, 3.99, 4.0, 7.3, 250.0])
def test_noise_sd_gaussian(scale: float) -> None:
    assert noise_sd(Mechanism.GAUSSIAN, scale) == pytest.approx(
        numeric_sd(Mechanism.GAUSSIAN, scale), rel=1e-9
    )


def test_small_gaussian_scales_are_not_sigma() -> None:
    # Below σ ≈ 0.5 the lattice makes the variance differ from σ²; noise_sd must know.
    assert noise_sd(Mechanism.GAUSSIAN, 0.3) < 0.3 * 0.9
    assert noise_sd(Mechanism.GAUSSIAN, 0.5) != pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("scale", [0.2, 0.5, 1.0, 1.6, 3.0, 12.0, 500.0, 20_000.0])
def test_noise_sd_laplace(scale: float) -> None:
    assert noise_sd(Mechanism.LAPLACE, scale) == pytest.approx(
        numeric_sd(Mechanism.LAPLACE, scale), rel=1e-9
    )


# -- (ε, δ) conversion --------------------------------------------------------------------


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-7, 1e-10])
def test_zcdp_to_epsilon_matches_opendp(rho: float, delta: float) -> None:
    gaussian = dp.m.make_gaussian(VECTOR, dp.l2_distance(T="f64"), scale=1.0)
    distance = math.sqrt(2 * rho)  # Δ²/(2σ²) = ρ with σ = 1
    assert gaussian.map(distance) == pytest.approx(rho, rel=1e-9)
    direct = dp.c.make_zCDP_to_approxDP(gaussian).map(distance).epsilon(delta=delta)
    ours = zcdp_to_epsilon(rho, delta)
    assert ours == pytest.approx(direct, rel=1e-6)
    # OpenDP's conversion is at least as tight as Bun & Steinke's ρ + 2√(ρ ln 1/δ).
    assert 0 < ours <= rho + 2 * math.sqrt(rho * math.log(1 / delta)) + 1e-12


def test_zcdp_to_epsilon_monotone() -> None:
    rhos = [1e-5, 1e-3, 0.01, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0]
    eps = [zcdp_to_epsilon(r, 1e-7) for r in rhos]
    assert all(a < b for a, b in itertools.pairwise(eps))
    by_delta = [zcdp_to_epsilon(0.1, d) for d in (1e-4, 1e-6, 1e-8, 1e-10)]
    assert all(a < b for a, b in itertools.pairwise(by_delta))
    assert zcdp_to_epsilon(0.0, 1e-7) == 0.0


# -- release ------------------------------------------------------------------------------


def _spec(privacy: Privacy, measures: tuple[Measure, ...]) -> QuerySpec:
    return QuerySpec.model_validate(
        {
            "period": Period.model_validate({"start": "2025-01-01", "end": "2025-12-31"}),
            "group_by": ("age_band",),
            "measures": measures,
            "bounds": Bounds(max_visits_per_person=6, max_cells_per_person=2),
            "privacy": privacy,
        }
    )


def test_calibrations_split_the_cost_evenly() -> None:
    spec = _spec(Privacy(rho=0.3), (Measure.VISITS, Measure.PERSONS, Measure.REVENUE))
    cals = calibrations(spec)
    assert list(cals) == list(spec.measures)
    for measure, cal in cals.items():
        assert cal.rho == pytest.approx(0.1)
        expected = sensitivity(measure, spec.bounds).l2 / math.sqrt(0.2)
        assert cal.scale == pytest.approx(expected, rel=1e-6)
    assert sum(c.rho for c in cals.values()) <= 0.3 * (1 + 1e-12)


def test_calibrations_laplace_split() -> None:
    spec = _spec(Privacy(mechanism=Mechanism.LAPLACE, epsilon=1.0), (Measure.PERSONS,))
    (cal,) = calibrations(spec).values()
    assert cal.scale == pytest.approx(2 / 1.0, rel=1e-6)  # g = 2
    two = _spec(
        Privacy(mechanism=Mechanism.LAPLACE, epsilon=1.0), (Measure.PERSONS, Measure.VISITS)
    )
    cals = calibrations(two)
    assert cals[Measure.PERSONS].scale == pytest.approx(2 / 0.5, rel=1e-6)
    assert cals[Measure.VISITS].scale == pytest.approx(6 / 0.5, rel=1e-6)


def test_privacy_spent() -> None:
    gauss = privacy_spent(_spec(Privacy(rho=0.2, delta=1e-8), (Measure.VISITS,)))
    assert gauss.rho == 0.2 and gauss.delta == 1e-8
    assert gauss.epsilon == pytest.approx(zcdp_to_epsilon(0.2, 1e-8))
    lap = privacy_spent(_spec(Privacy(mechanism=Mechanism.LAPLACE, epsilon=0.8), (Measure.VISITS,)))
    assert (lap.rho, lap.epsilon, lap.delta) == (pytest.approx(0.32), 0.8, 0.0)


def test_release_without_noise_is_exact() -> None:
    spec = _spec(Privacy(rho=0.3), (Measure.VISITS, Measure.REVENUE))
    exact = {Measure.VISITS: [1, 2, 3, 0, 0, 9], Measure.REVENUE: [10, 0, -5, 0, 7, 1]}
    results = release(spec, exact, noise=False)
    assert [r.measure for r in results] == list(spec.measures)
    for result in results:
        assert list(result.values) == exact[result.measure]
        assert result.mechanism is None and result.noise_sd == 0.0
        assert result.rho == pytest.approx(0.15)


def test_release_with_noise_reports_its_calibration() -> None:
    spec = _spec(Privacy(rho=0.5), (Measure.PERSONS,))
    (result,) = release(spec, {Measure.PERSONS: [0] * 6})
    assert result.mechanism is Mechanism.GAUSSIAN
    assert result.scale == pytest.approx(math.sqrt(2) / 1.0, rel=1e-6)
    assert result.noise_sd == pytest.approx(numeric_sd(Mechanism.GAUSSIAN, result.scale))
    assert (result.sensitivity_l1, result.sensitivity_l2) == (2.0, pytest.approx(math.sqrt(2)))
    assert len(result.values) == 6


def test_persons_cells_bound_is_capped_by_the_number_of_cells() -> None:
    # A person is counted at most once per cell, so g never exceeds the query's cell count.
    bounds = Bounds(max_visits_per_person=1000, max_cells_per_person=1000)
    capped = sensitivity(Measure.PERSONS, bounds, cell_count=6)
    assert (capped.l1, capped.l2) == (6.0, math.sqrt(6))
    uncapped = sensitivity(Measure.PERSONS, bounds)
    assert (uncapped.l1, uncapped.l2) == (1000.0, math.sqrt(1000))
    # visits and revenue do not depend on the number of cells
    assert sensitivity(Measure.VISITS, bounds, cell_count=6) == sensitivity(Measure.VISITS, bounds)
