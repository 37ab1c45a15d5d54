"""The estimators are exact on their model: fed the *expected* histogram of a compound-Poisson
(or union-of-patterns) population, they return that population; and their intervals have the
right size in the limits where the variance is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from protocol.reach import estimate
from protocol.reach.calibration import DummyPlan
from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.venn import venn
from tests.reachkit import run_round

M = 1 << 20


def compound_poisson(lam: float, f: np.ndarray, size: int) -> np.ndarray:
    """g_0..g_{size−1} by Panjer's recursion for Poisson(λ) persons of weight law f (f[0] = 0)."""
    g = np.zeros(size)
    g[0] = math.exp(-lam)
    for v in range(1, size):
        g[v] = lam / v * sum(j * f[j] * g[v - j] for j in range(1, min(v, f.size - 1) + 1))
    return g


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.001, 2.0),
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6),
)
def test_panjer_inversion_recovers_the_population_from_its_expected_histogram(
    lam: float, weights: list[float]
) -> None:
    f = np.array([0.0, *weights])
    f /= f.sum()
    h = M * compound_poisson(lam, f, 8)
    top = 4
    out = estimate.frequency(h, M, 0.0, top=top)
    n = lam * M
    assert out.reach.estimate == pytest.approx(n, rel=1e-9)
    for k in range(1, top):
        expected = n * f[k] if k < f.size else 0.0
        assert out.bins[k - 1].estimate == pytest.approx(expected, rel=1e-7, abs=1e-6 * n)
    assert out.tail.estimate == pytest.approx(n * f[top:].sum(), rel=1e-7, abs=1e-6 * n)


def union_histogram(lam: float, pi: np.ndarray) -> np.ndarray:
    """Expected share of buckets showing each pattern when Poisson(λ) persons of pattern law π
    fall in a bucket: g = Möbius(exp(−λ(1 − Π(⊆S))))."""
    size = pi.size
    subset = np.array([[(q & ~s) == 0 for q in range(size)] for s in range(size)], dtype=float)
    within = np.exp(-lam * (1 - subset @ pi))
    sign = np.array(
        [
            [(-1.0) ** (bin(p).count("1") - bin(s).count("1")) for s in range(size)]
            for p in range(size)
        ]
    )
    return (subset * sign) @ within


@settings(max_examples=30, deadline=None)
@given(st.floats(0.001, 1.5), st.integers(1, 4), st.data())
def test_the_venn_recovers_every_pattern_from_its_expected_histogram(
    lam: float, categories: int, data: st.DataObject
) -> None:
    size = 1 << categories
    raw = data.draw(st.lists(st.floats(0.0, 1.0), min_size=size - 1, max_size=size - 1))
    pi = np.array([0.0, *raw]) + np.array([0.0] + [1e-3] * (size - 1))
    pi /= pi.sum()
    v = venn(M * union_histogram(lam, pi), categories, M, 0.0)
    n = lam * M
    assert v.reach().estimate == pytest.approx(n, rel=1e-9)
    for p in range(1, size):
        cats = [c for c in range(categories) if p >> c & 1]
        assert v.exactly(cats).estimate == pytest.approx(n * pi[p], rel=1e-6, abs=1e-6 * n)
    seen_in_0 = [p for p in range(size) if p & 1]
    assert v.all_of([0]).estimate == pytest.approx(n * pi[seen_in_0].sum(), rel=1e-6, abs=1e-6 * n)


def test_linear_counting_variance_is_whangs_for_a_fixed_population() -> None:
    lam = 0.3
    h = M * compound_poisson(lam, np.array([0.0, 1.0]), 4)
    sd = estimate.reach(h, M, 0.0).sd
    assert sd == pytest.approx(math.sqrt(M * (math.exp(lam) - lam - 1)), rel=1e-9)
    # With noise only: the delta method, m/h_0 per unit of noise on h_0.
    noisy = estimate.reach(h, M, 40.0).sd
    assert noisy**2 - sd**2 == pytest.approx((M / h[0]) ** 2 * 40.0, rel=1e-9)


def test_estimates_refuse_a_histogram_without_empty_buckets() -> None:
    with pytest.raises(ReachInputError, match="no empty bucket"):
        estimate.reach(np.array([0.0, 100.0]), 100, 0.0)
    with pytest.raises(ReachInputError, match="at least 4 values"):
        estimate.frequency(np.array([10.0, 1.0]), 11, 0.0, top=4)
    with pytest.raises(ReachInputError, match="no empty bucket"):
        venn(np.array([0.0, 5.0]), 1, 5, 0.0)
    with pytest.raises(ReachInputError, match="values"):
        venn(np.ones(3), 1, 5, 0.0)
    with pytest.raises(ReachInputError, match="category 3"):
        venn(np.ones(4), 2, 4, 0.0).all_of([3])


def test_each_helpers_output_alone_is_uniform() -> None:
    layout = Layout(Kind.COUNT, 16)
    ones = np.zeros(layout.buckets, dtype=np.uint8)
    ones[: layout.buckets // 8] = 1
    counts = (np.full(256, 3), np.full(256, 2))
    plan = DummyPlan(rho=1.0, scale=1.0, shift=3, values=256, truncation_delta=1e-3)
    _, out_a, out_b = run_round(layout, plan, [((), ones), ((), ones)], counts)
    for out in (out_a, out_b):
        assert stats.chisquare(np.bincount(out, minlength=256)).pvalue > 1e-6
    # ... while their sum, the shuffled bucket values and dummies, is far from uniform.
    assert stats.chisquare(np.bincount(out_a + out_b, minlength=256)).pvalue < 1e-6
