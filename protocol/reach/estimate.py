"""Aggregator side: reach and the frequency distribution from a count histogram, with 95% intervals.

Model. n persons, person p of weight K_p (1 per institution for presence, capped visits for
visits vectors), thrown into m buckets by the hash; a bucket's value is the sum of its persons'
weights. With λ = n/m and f_k the share of persons of weight k, the number of persons per bucket
is (to an excellent approximation) Poisson(λ), so a bucket's value is compound Poisson:

    g_0 = e^{−λ},    v·g_v = λ · Σ_{j=1}^{v} j·f_j·g_{v−j}     (Panjer's recursion).

Estimates from the noisy histogram h (g = h/m):

* reach n̂ = −m·ln(h_0/m): linear counting (Whang, Vander-Zanden and Taylor 1990);
* f̂_v = (v·g_v − λ̂·Σ_{j=1}^{v−1} j·f̂_j·g_{v−j}) / (λ̂·v·g_0) for v = 1..top−1, the recursion
  solved for f (compound-Poisson inversion), and N̂_v = n̂·f̂_v persons of weight exactly v;
* the tail N̂_{top+} = n̂ − Σ_v N̂_v, so no histogram value above top−1 is needed.

Intervals. The target is the fixed population, so the randomness is the hash (which persons
collide) and the noise. The covariance of (h_0..h_{top−1}) for a fixed population is the
Poissonised multinomial covariance m·(diag g − g gᵀ) conditioned on the type counts N_k:
minus Σ_k μ_k·d_k d_kᵀ with d_k[v] = g_{v−k} − g_v (reach-privacy.md §6; for h_0 alone it is
Whang et al.'s m·e^{−λ}(1 − (1+λ)e^{−λ})), plus the noise variance on the diagonal. The delta
method carries it through the estimator, whose Jacobian is computed exactly by complex-step
differentiation. Each interval is estimate ± 1.96·sd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError

Z95 = 1.959963984540054
_STEP = 1e-20  # complex step: exact derivatives, no cancellation


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its standard deviation and 95% interval."""

    estimate: float
    sd: float

    @property
    def low(self) -> float:
        return self.estimate - Z95 * self.sd

    @property
    def high(self) -> float:
        return self.estimate + Z95 * self.sd

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True, slots=True)
class Frequency:
    """Reach and the persons of each weight: ``bins[i]`` has weight i+1, ``tail`` top or more."""

    top: int
    reach: Interval
    bins: tuple[Interval, ...]
    tail: Interval


def _panjer(h: npt.NDArray[Any], buckets: int, top: int) -> npt.NDArray[Any]:
    """[n̂, N̂_1, …, N̂_{top−1}, N̂_{top+}] from h_0..h_{top−1} (real or complex)."""
    g = h / buckets
    lam = -np.log(g[0])
    f: list[Any] = [0.0]
    for v in range(1, top):
        inner = sum(j * f[j] * g[v - j] for j in range(1, v))
        f.append((v * g[v] - lam * inner) / (lam * v * g[0]))
    n = lam * buckets
    counts = [n * fv for fv in f[1:]]
    return np.array([n, *counts, n - sum(counts)])


def jacobian(
    func: Callable[[npt.NDArray[Any]], npt.NDArray[Any]], x: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """d func / d x by complex-step differentiation (rows: outputs, columns: inputs)."""
    columns = []
    for i in range(x.size):
        z = x.astype(complex)
        z[i] += 1j * _STEP
        columns.append(np.imag(func(z)) / _STEP)
    return np.array(columns).T


def sampling_covariance(
    g: npt.NDArray[np.float64], buckets: int, mu: npt.NDArray[np.float64], mu_tail: float
) -> npt.NDArray[np.float64]:
    """Covariance of h_0..h_{top−1} over the hash, for a fixed population with μ_k persons of
    weight k (k = 1..top−1) and μ_tail of weight top or more."""
    top = g.size
    cov = buckets * (np.diag(g) - np.outer(g, g))
    for k in range(1, top):
        d = -g.copy()
        d[k:] += g[: top - k]
        cov -= mu[k - 1] * np.outer(d, d)
    cov -= mu_tail * np.outer(g, g)
    return np.asarray(cov, dtype=np.float64)


def _check(hist: npt.NDArray[Any], buckets: int, noise_variance: float, top: int) -> None:
    if top < 1:
        raise ReachInputError("top is at least 1")
    if hist.ndim != 1 or hist.size < top:
        raise ReachInputError(f"the histogram needs at least {top} values")
    if buckets < 1 or noise_variance < 0:
        raise ReachInputError("buckets must be positive and the noise variance non-negative")
    if not hist[0] > 0:
        raise ReachInputError("no empty bucket is left: choose more buckets")


def frequency(hist: npt.ArrayLike, buckets: int, noise_variance: float, top: int = 4) -> Frequency:
    """Reach, persons of weight 1..top−1 and of weight ≥ top, each with a 95% interval.

    ``hist``: the noisy histogram (``histogram.noisy_histogram``), at least ``top`` values;
    ``noise_variance``: its noise per value (``DummyPlan.noise_variance``; 0 without noise).
    """
    h = np.asarray(hist, dtype=np.float64)
    _check(h, buckets, noise_variance, top)
    h = h[:top]
    est = np.real(_panjer(h, buckets, top))
    g = np.clip(h, 0, None) / buckets
    mu = np.clip(est[1:top], 0, None)
    cov = sampling_covariance(g, buckets, mu, max(float(est[top]), 0.0))
    cov += noise_variance * np.eye(top)
    jac = jacobian(lambda z: _panjer(z, buckets, top), h)
    var = np.clip(np.einsum("ij,jk,ik->i", jac, cov, jac), 0, None)
    out = [Interval(float(e), float(np.sqrt(v))) for e, v in zip(est, var, strict=True)]
    return Frequency(top, out[0], tuple(out[1:top]), out[top])


def reach(hist: npt.ArrayLike, buckets: int, noise_variance: float) -> Interval:
    """Deduplicated reach n̂ = −m·ln(h_0/m) with its 95% interval."""
    return frequency(hist, buckets, noise_variance, top=1).reach
