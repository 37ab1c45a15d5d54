"""ρ-zCDP as (ε, δ)-DP: the one conversion used by the nodes, the aggregator and the pages.

A node charges its ledger in ρ (zero-concentrated DP) and reports the same guarantee as
(ε, δ); a release quotes (ε, δ) for each table and for the whole release. All of them call
:func:`zcdp_to_epsilon`, so the same ρ and δ print the same ε everywhere.

The conversion is the tight one of Canonne, Kamath & Steinke (2020, "The Discrete Gaussian for
Differential Privacy", §2.3), the one OpenDP's ``make_zCDP_to_approxDP`` implements: ρ-zCDP
implies (ε, δ)-DP with

    δ(ε) = min over α > 1 of exp((α − 1)(αρ − ε)) / (α − 1) · (1 − 1/α)^α,

and ε is the smallest value with δ(ε) ≤ δ, found by bisection (always rounding towards the
safe side: a larger ε). It is tighter than Bun & Steinke's closed form ρ + 2√(ρ·ln(1/δ)), which
stays a valid upper bound and is the bisection's starting bracket. Plain arithmetic, no
dependencies, so that ``protocol`` stays importable without OpenDP; a test checks it against
OpenDP's conversion.
"""

from __future__ import annotations

import math
from functools import lru_cache

__all__ = ["bun_steinke_epsilon", "zcdp_delta", "zcdp_to_epsilon"]

_STEPS = 200  # bisection steps; both searches converge in double precision well before


def bun_steinke_epsilon(rho: float, delta: float) -> float:
    """The textbook bound ρ + 2√(ρ·ln(1/δ)) (Bun & Steinke 2016, Prop. 1.3): looser."""
    if rho <= 0:
        return 0.0
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The δ for which ρ-zCDP implies (ε, δ)-DP (CKS20, Prop. 12), optimised over α."""
    if rho < 0 or epsilon < 0:
        raise ValueError("rho and epsilon must not be negative")
    if rho == 0 or math.isinf(epsilon):
        return 0.0
    if math.isinf(rho):
        return 1.0
    # The optimal α is where the derivative of the exponent vanishes; any α > 1 gives a valid
    # bound, so an inexact search only makes δ larger (safe).
    low, high = 1.01, (epsilon + 1) / (2 * rho) + 2
    for _ in range(_STEPS):
        alpha = (low + high) / 2
        if alpha in (low, high):
            break
        derivative = (2 * alpha - 1) * rho - epsilon + math.log1p(-1 / alpha)
        if derivative < 0:
            low = alpha
        else:
            high = alpha
    alpha = (low + high) / 2
    exponent = (alpha - 1) * (alpha * rho - epsilon) + alpha * math.log1p(-1 / alpha)
    return min(max(math.exp(exponent) / (alpha - 1), 0.0), 1.0)


@lru_cache(maxsize=1024)
def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """The ε of (ε, δ)-DP implied by ρ-zCDP: the smallest ε with ``zcdp_delta(ρ, ε) ≤ δ``."""
    if not 0 < delta < 1:
        raise ValueError("delta must be between 0 and 1")
    if rho <= 0:
        return 0.0
    low, high = 0.0, bun_steinke_epsilon(rho, delta)
    if zcdp_delta(rho, low) <= delta:
        return 0.0
    for _ in range(_STEPS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if zcdp_delta(rho, middle) <= delta:
            high = middle
        else:
            low = middle
    return high
