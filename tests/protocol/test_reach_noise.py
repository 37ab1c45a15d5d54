"""The reach round's noise: calibration, and the law of what OpenDP really draws.

Why alpha = 1e-6 instead of a seed: the dummy counts come from OpenDP's discrete Gaussian sampler,
which cannot be seeded (and must not be), so these tests see fresh noise on every run and are made
non-flaky by their thresholds, as in tests/node/test_privacy_noise.py: each passes when p > 1e-6,
and each goodness-of-fit test shows its power against a scale 10% off (p far below 1e-6)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from protocol.calibration import noise_sd
from protocol.privacy_loss import zcdp_to_epsilon
from protocol.query import Mechanism
from protocol.reach import calibration, plausibility
from protocol.reach.calibration import HISTOGRAM_L2, DummyPlan, plan, tail_bound
from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.noise import _gaussian, draw_dummy_counts
from tests.reachkit import count_vectors, population, run_round

ALPHA = 1e-6
Z_CRIT = float(stats.norm.isf(ALPHA / 2))
COUNT = Layout(Kind.COUNT, 8)


def clamped_pmf(scale: float, shift: int) -> np.ndarray:
    """Exact law of s + clamp(N_Z(0, σ²), −s, s) on 0..2s."""
    half = math.ceil(14 * scale) + shift + 5
    k = np.arange(-half, half + 1)
    w = np.exp(-(k.astype(float) ** 2) / (2 * scale * scale))
    w /= w.sum()
    out = np.zeros(2 * shift + 1)
    np.add.at(out, np.clip(k, -shift, shift) + shift, w)
    return out


def chi2_pvalue(sample: np.ndarray, pmf: np.ndarray) -> float:
    observed = np.bincount(sample, minlength=pmf.size).astype(float)
    expected = pmf * sample.size
    # Merge the tails into bins with at least 20 expected counts.
    keep = expected >= 20
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def test_the_scale_costs_rho_in_opendps_own_map() -> None:
    for rho in (0.005, 0.05, 0.5, 2.0):
        p = plan(COUNT, rho)
        spent = float(_gaussian(p.scale).map(HISTOGRAM_L2))
        assert spent <= rho
        assert spent == pytest.approx(rho, rel=1e-6)
        assert p.scale == pytest.approx(1 / math.sqrt(rho), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.001, 10.0),
    st.sampled_from([2, 8, 256]),
    st.floats(1e-15, 1e-3),
)
def test_the_shift_is_the_smallest_that_meets_the_truncation_delta(
    rho: float, values: int, delta: float
) -> None:
    scale = calibration.dummy_scale(rho)
    s = calibration.dummy_shift(scale, values, delta)
    assert tail_bound(scale, s, values) <= delta
    assert s == 0 or tail_bound(scale, s - 1, values) > delta


def test_the_tail_bound_holds_for_the_exact_law() -> None:
    for scale in (0.8, 4.47, 20.0):
        for shift in (1, 5, 30):
            k = np.arange(-40 * math.ceil(scale) - shift, 40 * math.ceil(scale) + shift + 1)
            w = np.exp(-(k.astype(float) ** 2) / (2 * scale * scale))
            outside = w[np.abs(k) > shift].sum() / w.sum()  # the mass the clamping moves
            assert outside <= tail_bound(scale, shift, 1)


def test_epsilon_accounts_for_the_truncation() -> None:
    p = plan(COUNT, 0.05)
    assert p.epsilon(1e-9) == zcdp_to_epsilon(0.05, 5e-10)
    with pytest.raises(ReachInputError, match="too small"):
        dataclasses.replace(p, truncation_delta=1e-9).epsilon(1e-9)
    with pytest.raises(ReachInputError, match="rho"):
        plan(COUNT, 0.0)


def test_dummy_counts_follow_the_clamped_discrete_gaussian() -> None:
    p = dataclasses.replace(plan(COUNT, 0.05), values=150_000)
    sample = draw_dummy_counts(p)
    assert sample.min() >= 0 and sample.max() <= 2 * p.shift
    assert chi2_pvalue(sample, clamped_pmf(p.scale, p.shift)) > ALPHA
    for wrong in (p.scale * 0.9, p.scale * 1.1):
        assert chi2_pvalue(sample, clamped_pmf(wrong, p.shift)) < ALPHA


def test_a_small_shift_really_clamps() -> None:
    p = dataclasses.replace(plan(COUNT, 0.05), shift=3, values=60_000)
    sample = draw_dummy_counts(p)
    assert sample.min() == 0 and sample.max() == 6
    assert chi2_pvalue(sample, clamped_pmf(p.scale, 3)) > ALPHA


def test_the_histogram_noise_of_whole_rounds_has_mean_zero_and_the_plans_variance() -> None:
    pop = population(seed=5, persons=300, nodes=6)
    vectors = count_vectors(pop, b"reach-test-salt!", COUNT)
    p = plan(COUNT, 0.05)
    exact, _, _ = run_round(COUNT, calibration.unsafe_noise_off(COUNT), vectors)
    noise = []
    for i in range(60):
        counts = (draw_dummy_counts(p), draw_dummy_counts(p))
        noisy, _, _ = run_round(COUNT, p, vectors, counts, round_id=b"r%d" % i)
        noise.append(noisy - exact)
    x = np.concatenate(noise).astype(float)
    var = p.noise_variance
    assert var == pytest.approx(2 * noise_sd(Mechanism.GAUSSIAN, p.scale) ** 2)
    assert abs(x.mean()) / math.sqrt(var / x.size) < Z_CRIT
    # Var of the sample variance of a sum of two discrete Gaussians (kurtosis 3 to 1e-9).
    se_var = var * math.sqrt(2 / (x.size - 1))
    assert abs(x.var(ddof=1) - var) / se_var < Z_CRIT
    assert abs(x.var(ddof=1) - 1.21 * var) / se_var > Z_CRIT  # the power: 10% in σ is seen
    # Each value's noise is the sum of two independent draws: neighbouring values uncorrelated.
    r = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert abs(r) * math.sqrt(x.size) < Z_CRIT


# -- malicious nodes: what the plausibility checks catch ---------------------------------------


def _malicious_round(extra: np.ndarray | None) -> tuple[np.ndarray, int, DummyPlan]:
    layout = Layout(Kind.COUNT, 14)
    pop = population(seed=9, persons=3000, nodes=10)
    vectors = count_vectors(pop, b"reach-test-salt!", layout)
    if extra is not None:
        vectors.append(((), extra.astype(np.uint8)))
    p = plan(layout, 0.05)
    counts = (draw_dummy_counts(p), draw_dummy_counts(p))
    hist, _, _ = run_round(layout, p, vectors, counts)
    return hist, int(pop.institutions().sum()), p


def test_an_honest_round_passes_the_plausibility_checks() -> None:
    hist, records, p = _malicious_round(None)
    result = plausibility.check(hist, p.noise_variance, max_value=30)
    assert result.ok
    # The weight is the number of node–person records, up to noise of the plan's size.
    assert abs(result.weight.estimate - records) / result.weight.sd < Z_CRIT


def test_a_node_that_adds_persons_or_hides_weight_is_seen() -> None:
    rng = np.random.default_rng(4)
    fake = np.zeros(1 << 14, dtype=np.int64)
    fake[rng.choice(1 << 14, 4000, replace=False)] = 1  # 4,000 fake persons
    hist, records, p = _malicious_round(fake)
    result = plausibility.check(hist, p.noise_variance, max_value=30)
    assert result.ok and not result.weight_matches(records)
    # Offsetting the weight with −1 (= 255) on other buckets lands on implausible values.
    fake[rng.choice(np.flatnonzero(fake == 0), 4000, replace=False)] = 255
    hist, records, p = _malicious_round(fake)
    assert 255 in plausibility.check(hist, p.noise_variance, max_value=30).implausible
