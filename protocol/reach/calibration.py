"""Privacy calibration of the reach round: the dummies' scale and shift, and what they cost.

The aggregator's view is (equivalent to) the histogram H of bucket values plus, per value, the
dummy counts of both helpers (docs/explanation/reach-privacy.md §3). Adding or removing one
person (one sector pseudonym) changes the value of exactly one bucket, from a to a', so H changes
by −1 at a and +1 at a': Δ₂ = √2 and Δ₁ = 2, whatever the value encoding, the weights or the
number of institutions the person visited.

Each helper j adds, for each of the layout's values v, D_v^j = s + clamp(X_v^j, −s, s) dummy
entries of value v, X_v^j from OpenDP's discrete Gaussian at scale σ = Δ₂/√(2ρ). One helper's
dummies alone make the histogram ρ-zCDP up to the clamping, which changes the output only on
the event that some |X_v^j| > s; its probability is at most

    δ₀ = |values| · 2·exp(−(s+1)²/(2σ²))          (the discrete Gaussian is σ-subgaussian)

and s is the smallest shift with δ₀ ≤ ``truncation_delta``. Why both helpers add the full
noise: reach-privacy.md §4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.calibration import SCALE_SLACK, noise_sd
from protocol.privacy_loss import zcdp_to_epsilon
from protocol.query import Mechanism
from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Layout

HISTOGRAM_L2 = math.sqrt(2)
HISTOGRAM_L1 = 2
DEFAULT_TRUNCATION_DELTA = 1e-12
HELPERS = 2


@dataclass(frozen=True, slots=True)
class DummyPlan:
    """The dummies of one reach query: per helper and value, s + clamp(N_Z(0, σ²), −s, s)."""

    rho: float
    scale: float
    shift: int
    values: int
    truncation_delta: float  # δ₀: the bound on the clamping's effect, per helper

    @property
    def noise_variance(self) -> float:
        """Variance of the noise on one histogram value after the shift is removed: both
        helpers' discrete Gaussians (the clamping only lowers it, so this is an upper bound)."""
        if self.scale == 0:
            return 0.0
        return HELPERS * noise_sd(Mechanism.GAUSSIAN, self.scale) ** 2

    @property
    def max_dummies(self) -> int:
        """Most dummy entries one helper can append (2s per value)."""
        return self.values * 2 * self.shift

    def epsilon(self, delta: float) -> float:
        """(ε, δ)-DP of the query: ρ-zCDP at δ − δ₀·(1 + e^ε) (reach-privacy.md §3)."""
        eps = zcdp_to_epsilon(self.rho, delta / 2)
        if self.truncation_delta * (1 + math.exp(eps)) > delta / 2:
            raise ReachInputError("delta is too small for this plan's truncation delta")
        return eps


def dummy_scale(rho: float) -> float:
    """σ with Δ₂²/(2σ²) = ρ for Δ₂ = √2, i.e. σ = 1/√ρ (plus float slack)."""
    if not (math.isfinite(rho) and rho > 0):
        raise ReachInputError(f"rho must be a positive, finite number, got {rho}")
    return HISTOGRAM_L2 / math.sqrt(2 * rho) * SCALE_SLACK


def tail_bound(scale: float, shift: int, values: int) -> float:
    """Upper bound on P(some |X_v| > shift) for ``values`` discrete Gaussians of ``scale``."""
    return min(1.0, values * 2 * math.exp(-((shift + 1) ** 2) / (2 * scale**2)))


def dummy_shift(scale: float, values: int, truncation_delta: float) -> int:
    """The smallest shift s with ``tail_bound(scale, s, values) ≤ truncation_delta``."""
    if not 0 < truncation_delta < 1:
        raise ReachInputError("the truncation delta is in (0, 1)")
    s = max(0, math.ceil(scale * math.sqrt(2 * math.log(2 * values / truncation_delta))) - 1)
    while s > 0 and tail_bound(scale, s - 1, values) <= truncation_delta:
        s -= 1
    while tail_bound(scale, s, values) > truncation_delta:
        s += 1
    return s


def plan(
    layout: Layout, rho: float, truncation_delta: float = DEFAULT_TRUNCATION_DELTA
) -> DummyPlan:
    """The dummy plan for one query of ``layout`` at cost ``rho`` (per person, zCDP)."""
    scale = dummy_scale(rho)
    shift = dummy_shift(scale, layout.values, truncation_delta)
    return DummyPlan(rho, scale, shift, layout.values, truncation_delta)


def unsafe_noise_off(layout: Layout) -> DummyPlan:
    """No dummies at all: the exact histogram, **no privacy** (ρ = ∞). For tests and the
    noise-off benchmark only; a service must refuse it outside its test-only settings."""
    return DummyPlan(math.inf, 0.0, 0, layout.values, 1.0)
