"""Noise scales and their standard deviations: the one definition nodes and the aggregator share.

Pure functions. A node calibrates its noise with these (``node.privacy.noise`` then lets OpenDP's
privacy map check each scale and OpenDP sample the noise); the aggregator recomputes the same
numbers from the query spec and refuses an answer that reports anything else, so the two can
never drift apart. Independent rounds: one full-noise measurement per measure, the query's cost
split evenly over its measures. Secure rounds: one noise *share* per measure and node, sized by
``protocol.noise_shares.share_scale`` for the round's threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from protocol.noise_shares import share_scale
from protocol.query import Measure, Mechanism, QuerySpec
from protocol.sensitivity import Sensitivity, sensitivity

# Closed-form scales are exact in real arithmetic; this factor absorbs float rounding so that
# OpenDP's (conservatively rounded) privacy map never reports more than the budget.
SCALE_SLACK = 1 + 1e-9
# How closely a reported scale or standard deviation must match the recomputed one: both sides
# compute the same float expression, so they agree exactly unless the software differs.
TOLERANCE = 1e-9


def gaussian_scale(sens: Sensitivity, rho: float) -> float:
    """The smallest discrete-Gaussian scale σ with Δ₂²/(2σ²) ≤ ρ (plus float slack)."""
    return sens.l2 / math.sqrt(2 * rho) * SCALE_SLACK


def laplace_scale(sens: Sensitivity, epsilon: float) -> float:
    """The smallest discrete-Laplace scale b with Δ₁/b ≤ ε (plus float slack)."""
    return sens.l1 / epsilon * SCALE_SLACK


@lru_cache(maxsize=1024)
def noise_sd(mechanism: Mechanism, scale: float) -> float:
    """Exact standard deviation of the integer noise at this scale.

    Discrete Laplace with P(k) ∝ exp(-|k|/b): Var = 2q/(1-q)² with q = exp(-1/b).
    Discrete Gaussian with P(k) ∝ exp(-k²/2σ²): the variance is a fast-converging sum; for σ ≥ 4 it
    equals σ² to well below double precision (Canonne, Kamath, Steinke 2020, Prop. 19 and §2.3).
    """
    if scale <= 0:
        return 0.0  # a measure no person can change (sensitivity 0) needs no noise
    if mechanism is Mechanism.LAPLACE:
        q = math.exp(-1.0 / scale)
        return math.sqrt(2 * q) / (1 - q)
    if scale >= 4:
        return scale
    terms = range(1, int(scale * 40) + 2)
    weights = [math.exp(-(k * k) / (2 * scale * scale)) for k in terms]
    z = 1 + 2 * sum(weights)
    second = 2 * sum(k * k * w for k, w in zip(terms, weights, strict=True))
    return math.sqrt(second / z)


@dataclass(frozen=True, slots=True)
class ExpectedNoise:
    """What one measure's noise must be for a given spec (and, in secure mode, threshold)."""

    measure: Measure
    mechanism: Mechanism
    scale: float
    noise_sd: float
    sensitivity: Sensitivity


def expected_noise(spec: QuerySpec) -> dict[Measure, ExpectedNoise]:
    """Independent mode: each measure's full noise, the query's cost split over its measures."""
    share = len(spec.measures)
    result: dict[Measure, ExpectedNoise] = {}
    for measure in spec.measures:
        sens = sensitivity(measure, spec.bounds, spec.cell_count)
        mechanism = spec.privacy.mechanism
        if mechanism is Mechanism.GAUSSIAN:
            assert spec.privacy.rho is not None
            scale = gaussian_scale(sens, spec.privacy.rho / share)
        else:
            assert spec.privacy.epsilon is not None
            scale = laplace_scale(sens, spec.privacy.epsilon / share)
        result[measure] = ExpectedNoise(measure, mechanism, scale, noise_sd(mechanism, scale), sens)
    return result


def expected_share_noise(spec: QuerySpec, threshold: int) -> dict[Measure, ExpectedNoise]:
    """Secure mode: each measure's noise share of one node, for a round of threshold t."""
    if spec.privacy.mechanism is not Mechanism.GAUSSIAN or spec.privacy.rho is None:
        raise ValueError("secure mode needs a rho (zCDP) budget and the gaussian mechanism")
    rho = spec.rho_per_measure()
    dim = spec.cell_count
    result: dict[Measure, ExpectedNoise] = {}
    for measure in spec.measures:
        sens = sensitivity(measure, spec.bounds, dim)
        scale = share_scale(sens.l2, sens.l1, dim, rho, threshold)
        gaussian = Mechanism.GAUSSIAN
        result[measure] = ExpectedNoise(measure, gaussian, scale, noise_sd(gaussian, scale), sens)
    return result


def matches(reported: float, expected: float) -> bool:
    """True when a reported scale or SD is the recomputed one (to ``TOLERANCE``, relative)."""
    return math.isfinite(reported) and math.isclose(
        reported, expected, rel_tol=TOLERANCE, abs_tol=0.0
    )
