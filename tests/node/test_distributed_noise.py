"""Noise shares for secure rounds: the KLS bound, the share scale, and what OpenDP really draws.

Why alpha = 1e-6 instead of a seed
----------------------------------
OpenDP draws its noise from a cryptographically seeded sampler that cannot be seeded (and must not
be: a seedable noise source is a privacy bug), so the statistical tests below see fresh noise on
every run. They are made non-flaky by their thresholds, not by a seed: each test compares a large
sample of sums of real OpenDP shares with the *exact* law of that sum (the convolution of the
discrete-Gaussian pmfs) and passes when p > ALPHA = 1e-6, so a correct sampler fails a given test
about once in a million runs. Each test also shows its power: the same sample, judged against the
law of shares 10% too large, gives p far below ALPHA, so a wrong scale cannot slip through.
"""

from __future__ import annotations

import math
from datetime import date
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from node.privacy.distributed import SecureCalibration, secure_calibrations
from node.privacy.noise import _gaussian, add_noise, noise_sd
from node.privacy.release import calibrations
from protocol.catalogue import dimension
from protocol.noise_shares import MIN_SHARE_SCALE, kls_rho, kls_tau, share_scale, worst_case_rho
from protocol.query import Bounds, Measure, Mechanism, Period, Privacy, QuerySpec
from protocol.secagg import default_threshold
from protocol.sensitivity import Sensitivity, sensitivity

ALPHA = 1e-6
Z_CRIT = float(stats.norm.isf(ALPHA / 2))  # two-sided z bound, about 4.89

# The statistical tests: DRAWS sums of SHARES shares at scale SHARE_SCALE.
SHARES = 7
SHARE_SCALE = 1.3
DRAWS = 20_000


def nominal_rho(l2: float, scale: float, nodes: int) -> float:
    return l2**2 / (2 * nodes * scale**2)


# -- the KLS bound --------------------------------------------------------------------------------


def test_one_node_is_exactly_the_discrete_gaussian() -> None:
    assert kls_tau(1.0, 1) == 0.0
    for scale in (0.3, 1.0, 2.5, 40.0):
        assert kls_rho(scale, 1, 10.0, 10.0, 120) == worst_case_rho(10.0, scale)
        assert kls_rho(scale, 1, 10.0, 10.0, 120) == 10.0**2 / (2 * scale**2)


@pytest.mark.parametrize("nodes", [2, 7, 30, 300])
def test_kls_rho_tends_to_the_nominal_rho_as_shares_grow(nodes: int) -> None:
    l2, l1, dim = 3.0, 9.0, 1_000
    excess = [
        kls_rho(s, nodes, l2, l1, dim) / nominal_rho(l2, s, nodes) - 1 for s in (1, 1.2, 1.5, 2, 3)
    ]
    assert all(e > -1e-15 for e in excess)  # never below the nominal cost (up to rounding)
    assert excess[0] > excess[1] > excess[2] > excess[3]  # shrinks as σᵢ grows
    assert excess[0] > 1e-3  # at σᵢ = 1 the correction is visible ...
    assert abs(excess[-1]) < 1e-14  # ... and at σᵢ = 3 it is below double precision


def test_kls_tau_follows_its_definition() -> None:
    scale, nodes = 1.1, 5
    expected = 10 * sum(math.exp(-2 * math.pi**2 * scale**2 * k / (k + 1)) for k in range(1, nodes))
    assert kls_tau(scale, nodes) == pytest.approx(expected, rel=1e-12)
    # With σᵢ ≥ 1, τ stays below 6e-4 even for a thousand nodes.
    assert kls_tau(1.0, 1_000) < 6e-4


def test_kls_refuses_scales_outside_the_proposition() -> None:
    with pytest.raises(ValueError, match="at least 1/2"):
        kls_rho(0.4, 3, 1.0, 1.0, 10)
    with pytest.raises(ValueError, match="nodes"):
        kls_rho(1.0, 0, 1.0, 1.0, 10)
    with pytest.raises(ValueError, match="dim"):
        kls_rho(1.0, 2, 1.0, 1.0, 0)


# -- the share scale ------------------------------------------------------------------------------


def assert_minimal_share(scale: float, l2: float, l1: float, dim: int, rho: float, t: int) -> None:
    assert scale >= MIN_SHARE_SCALE
    assert kls_rho(scale, t, l2, l1, dim) <= rho
    assert scale == MIN_SHARE_SCALE or kls_rho(scale * (1 - 1e-6), t, l2, l1, dim) > rho


@settings(max_examples=80, deadline=None)
@given(
    l2=st.floats(0.5, 1e6),
    l1_factor=st.floats(0.0, 1.0),
    dim=st.integers(1, 100_000),
    rho=st.floats(1e-4, 10.0),
    threshold=st.integers(1, 400),
)
def test_share_scale_meets_the_bound_and_is_minimal(
    l2: float, l1_factor: float, dim: int, rho: float, threshold: int
) -> None:
    # Δ₂ ≤ Δ₁ ≤ √d·Δ₂ for any vector.
    l1 = l2 * (1 + l1_factor * (math.sqrt(dim) - 1))
    scale = share_scale(l2, l1, dim, rho, threshold)
    assert_minimal_share(scale, l2, l1, dim, rho, threshold)
    # More budget never needs bigger shares; more honest nodes never need bigger shares.
    assert share_scale(l2, l1, dim, rho * 2, threshold) <= scale
    assert share_scale(l2, l1, dim, rho, threshold + 1) <= scale


def test_share_scale_is_the_curator_scale_over_root_t_when_kls_is_invisible() -> None:
    l2, rho = 10.0, 0.05
    curator = l2 / math.sqrt(2 * rho)
    for t in (1, 7, 20, 60, 200):
        assert share_scale(l2, l2, 120, rho, t) == pytest.approx(curator / math.sqrt(t), rel=1e-8)


def test_shares_never_go_below_one() -> None:
    # Δ₂ = 1 at ρ = 0.5 needs σ = 1 from a curator, and σ/√t < 1 for every t > 1.
    for t in (2, 10, 100):
        assert share_scale(1.0, 1.0, 10, 0.5, t) == MIN_SHARE_SCALE
        assert kls_rho(MIN_SHARE_SCALE, t, 1.0, 1.0, 10) < 0.5


def test_the_kls_correction_raises_the_share_where_it_matters() -> None:
    # Δ₂ = Δ₁ = 1 (distinct persons, one cell each), 100,000 cells, 200 honest nodes, and a
    # budget at which the nominal share is just 1: there the KLS term is not negligible.
    l2 = l1 = 1.0
    dim, t = 100_000, 200
    rho = 1 / (2 * t)
    nominal = l2 / math.sqrt(2 * rho * t)
    assert nominal == pytest.approx(1.0)
    assert kls_rho(nominal * (1 + 1e-9), t, l2, l1, dim) > 5 * rho
    scale = share_scale(l2, l1, dim, rho, t)
    assert scale > 1.05 * nominal
    assert_minimal_share(scale, l2, l1, dim, rho, t)


def test_share_scale_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="threshold"):
        share_scale(1.0, 1.0, 10, 0.1, 0)
    with pytest.raises(ValueError, match="rho"):
        share_scale(1.0, 1.0, 10, 0.0, 3)


# -- one share alone, and OpenDP ------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1.3, 2.236, 31.62])
@pytest.mark.parametrize("l2", [1.0, math.sqrt(12), 10.0, 1_500_000.0])
def test_worst_case_rho_is_what_opendp_charges_for_one_share(scale: float, l2: float) -> None:
    charged = float(_gaussian(scale).map(l2))
    assert charged == pytest.approx(worst_case_rho(l2, scale), rel=1e-9)


def test_sub_unit_shares_drift_from_their_nominal_variance() -> None:
    # Why σᵢ ≥ 1 (docs/explanation/secure-noise.md): ten shares at σᵢ = 0.5 have variance 2.15,
    # not the nominal 2.5; at σᵢ = 1 the variance is within 0.01% of σᵢ².
    assert 10 * noise_sd(Mechanism.GAUSSIAN, 0.5) ** 2 == pytest.approx(2.15, abs=0.005)
    assert noise_sd(Mechanism.GAUSSIAN, 1.0) ** 2 == pytest.approx(1.0, rel=1e-4)


# -- per query ------------------------------------------------------------------------------------


def month_by_artform(rho: float, measures: tuple[Measure, ...]) -> QuerySpec:
    """12 months × 10 artforms = 120 cells, default bounds."""
    return QuerySpec(
        period=Period(start=date(2025, 1, 1), end=date(2025, 12, 31)),
        group_by=("month", "artform"),
        filters={
            "month": tuple(f"2025-{m:02d}" for m in range(1, 13)),
            "artform": dimension("artform").codes[:10],
        },
        measures=measures,
        bounds=Bounds(),
        privacy=Privacy(rho=rho),
    )


def test_secure_calibrations_split_the_budget_like_release() -> None:
    spec = month_by_artform(0.3, (Measure.VISITS, Measure.PERSONS, Measure.REVENUE))
    assert spec.cell_count == 120
    t = default_threshold(10)
    cals = secure_calibrations(spec, t)
    assert list(cals) == list(spec.measures)
    for measure, cal in cals.items():
        sens = sensitivity(measure, spec.bounds, 120)
        assert cal.measure is measure
        assert cal.sensitivity == sens
        assert cal.rho == pytest.approx(0.1)
        assert cal.scale == share_scale(sens.l2, sens.l1, 120, 0.1, t)
        assert cal.noise_sd == noise_sd(Mechanism.GAUSSIAN, cal.scale)
        assert cal.rho_worst == worst_case_rho(sens.l2, cal.scale)
        assert kls_rho(cal.scale, t, sens.l2, sens.l1, 120) <= cal.rho
        share = cal.calibration()
        assert (share.mechanism, share.scale, share.sensitivity) == (
            Mechanism.GAUSSIAN,
            cal.scale,
            sens,
        )
        assert share.rho == cal.rho_worst and share.epsilon is None
        assert float(_gaussian(share.scale).map(sens.l2)) == pytest.approx(share.rho, rel=1e-9)


def test_one_honest_node_needs_the_curator_scale() -> None:
    spec = month_by_artform(0.1, (Measure.VISITS, Measure.REVENUE))
    curator = calibrations(spec)
    for measure, cal in secure_calibrations(spec, 1).items():
        assert cal.scale == pytest.approx(curator[measure].scale, rel=1e-12)
        assert cal.rho_worst == pytest.approx(cal.rho, rel=1e-8)


def test_secure_mode_refuses_pure_dp() -> None:
    spec = month_by_artform(0.1, (Measure.VISITS,)).model_copy(
        update={"privacy": Privacy(mechanism=Mechanism.LAPLACE, epsilon=1.0)}
    )
    with pytest.raises(ValueError, match="rho"):
        secure_calibrations(spec, 3)


# -- the sum of real OpenDP shares ----------------------------------------------------------------


def discrete_gaussian_pmf(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf of N_Z(0, σ²); the mass beyond ±(12σ + 5) is below 1e-30."""
    half = math.ceil(12 * scale) + 5
    support = np.arange(-half, half + 1)
    weights = np.exp(-(support.astype(float) ** 2) / (2 * scale * scale))
    return support, weights / weights.sum()


@cache
def sum_pmf(scale: float, shares: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact law of the sum of ``shares`` iid shares: the pmf convolved with itself."""
    _, pmf = discrete_gaussian_pmf(scale)
    total = pmf
    for _ in range(shares - 1):
        total = np.convolve(total, pmf)
    half = (len(total) - 1) // 2
    return np.arange(-half, half + 1), total


@cache
def summed_shares() -> np.ndarray:
    """DRAWS sums of SHARES real OpenDP shares at SHARE_SCALE, each share from ``add_noise``."""
    share = SecureCalibration(
        measure=Measure.PERSONS,
        scale=SHARE_SCALE,
        noise_sd=noise_sd(Mechanism.GAUSSIAN, SHARE_SCALE),
        sensitivity=Sensitivity(l1=1.0, l2=1.0),
        rho=nominal_rho(1.0, SHARE_SCALE, SHARES),
        rho_worst=worst_case_rho(1.0, SHARE_SCALE),
    ).calibration()
    zeros = [0] * DRAWS
    draws = np.array([add_noise(zeros, share) for _ in range(SHARES)], dtype=np.int64)
    return draws.sum(axis=0)


def variance_z(sample: np.ndarray, scale: float) -> float:
    """z of mean(X²) against the exact variance of the sum, with its exact fourth moment.

    The law is symmetric, so E[X] = 0 and mean(X²) is unbiased for the variance with
    Var(mean(X²)) = (μ₄ − μ₂²)/n.
    """
    support, pmf = sum_pmf(scale, SHARES)
    k = support.astype(float)
    mu2, mu4 = float(np.sum(k**2 * pmf)), float(np.sum(k**4 * pmf))
    m2 = float(np.mean(sample.astype(float) ** 2))
    return (m2 - mu2) / math.sqrt((mu4 - mu2**2) / len(sample))


def chi_square_p(sample: np.ndarray, scale: float) -> float:
    """χ² goodness of fit against the exact law, tails merged until each bin expects ≥ 20."""
    support, pmf = sum_pmf(scale, SHARES)
    lo, hi = int(support[0]), int(support[-1])
    assert sample.min() >= lo and sample.max() <= hi, "noise far outside the law's support"
    observed = np.bincount(sample - lo, minlength=len(support)).astype(float)
    expected = pmf * len(sample)
    left = int(np.argmax(np.cumsum(expected) >= 20))
    right = len(expected) - 1 - int(np.argmax(np.cumsum(expected[::-1]) >= 20))
    obs = np.concatenate(
        [[observed[: left + 1].sum()], observed[left + 1 : right], [observed[right:].sum()]]
    )
    exp = np.concatenate(
        [[expected[: left + 1].sum()], expected[left + 1 : right], [expected[right:].sum()]]
    )
    return float(stats.chisquare(obs, exp).pvalue)


def test_exact_law_of_the_sum_has_the_variance_of_its_shares() -> None:
    support, pmf = sum_pmf(SHARE_SCALE, SHARES)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    variance = float(np.sum(support.astype(float) ** 2 * pmf))
    assert variance == pytest.approx(
        SHARES * noise_sd(Mechanism.GAUSSIAN, SHARE_SCALE) ** 2, rel=1e-12
    )


def test_sum_of_opendp_shares_has_the_expected_mean_and_variance() -> None:
    sample = summed_shares()
    variance = SHARES * noise_sd(Mechanism.GAUSSIAN, SHARE_SCALE) ** 2
    mean_z = float(np.mean(sample)) / math.sqrt(variance / len(sample))
    assert abs(mean_z) < Z_CRIT, f"mean {np.mean(sample)} is off (z = {mean_z:.2f})"
    z = variance_z(sample, SHARE_SCALE)
    assert abs(z) < Z_CRIT, f"variance {np.var(sample)} vs {variance} (z = {z:.2f})"
    # Power: shares 10% too large would have been caught.
    assert abs(variance_z(sample, SHARE_SCALE * 1.1)) > 2 * Z_CRIT


def test_sum_of_opendp_shares_follows_the_exact_convolution() -> None:
    sample = summed_shares()
    p = chi_square_p(sample, SHARE_SCALE)
    assert p > ALPHA, f"χ² p = {p:.3g} against the convolution of {SHARES} shares"
    assert chi_square_p(sample, SHARE_SCALE * 1.1) < ALPHA  # power
