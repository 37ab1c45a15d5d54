"""The arithmetic of distributed noise in secure rounds: share scales and their privacy cost.

Pure functions, shared by the nodes (which draw the shares, ``node.privacy.distributed``) and
the aggregator (which checks a secure round's worst case against the nodes' policies before
asking). A sum of discrete Gaussians is not a discrete Gaussian, so Δ₂²/(2tσᵢ²) is not quite its
cost. Kairouz, Liu and Steinke 2021 (arXiv:2102.06387, Proposition 14) bound the Rényi
divergence of order α of the sum of n shares, for an integer vector query of dimension d, by

    α/2 · (l2s² + 2·l1s·τ + τ²·d)   and by   α/2 · (l2s + √d·τ)²,

with l2s = Δ₂/(√n·σᵢ), l1s = Δ₁/(√n·σᵢ) and τ = 10·Σ_{k=1}^{n−1} exp(−2π²σᵢ²·k/(k+1)). Both are
linear in α, so the sum is ρ_KLS-zCDP with ρ_KLS = ½·min(…) (``kls_rho``). For σᵢ ≥ 1 the
correction τ is at most about 5.4·10⁻⁴ and usually invisible; shares are never below σᵢ = 1
(smaller shares make the sum drift from a discrete Gaussian; docs/explanation/secure-noise.md).
"""

from __future__ import annotations

import math

from protocol.query import Mechanism, QuerySpec
from protocol.sensitivity import sensitivity

# A share is never smaller than this (docs/explanation/secure-noise.md, "Why σᵢ ≥ 1").
MIN_SHARE_SCALE = 1.0
# Proposition 14 of Kairouz, Liu and Steinke holds for σ ≥ 1/2.
_KLS_MIN_SCALE = 0.5
# As in node.privacy.noise: closed-form scales are exact in real arithmetic; this factor absorbs
# float rounding so that the bound computed in floating point is never exceeded in real numbers.
_SLACK = 1 + 1e-9
# Bisection stops when the interval is this narrow, relative to its upper end.
_BISECT_TOLERANCE = 1e-12
_BISECT_STEPS = 200


def kls_tau(scale: float, nodes: int) -> float:
    """τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ²·k/(k+1)), the KLS inflation term for n shares of scale σ."""
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    if nodes > 1 and not scale >= _KLS_MIN_SCALE:
        raise ValueError(f"the KLS bound needs a share scale of at least 1/2, got {scale}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    c = 2 * math.pi**2 * scale**2
    return 10 * math.fsum(math.exp(-c * k / (k + 1)) for k in range(1, nodes))


def kls_rho(scale: float, nodes: int, l2: float, l1: float, dim: int) -> float:
    """zCDP ρ of the sum of ``nodes`` iid discrete-Gaussian shares of ``scale`` (KLS21, Prop. 14).

    ``l2``, ``l1``: the query's sensitivities Δ₂ and Δ₁; ``dim``: its number of cells d. For one
    node τ = 0 and this is exactly Δ₂²/(2σ²) (Canonne, Kamath and Steinke 2020).
    """
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    if l2 < 0 or l1 < 0:
        raise ValueError(f"sensitivities must be non-negative, got l2={l2}, l1={l1}")
    tau = kls_tau(scale, nodes)  # validates scale and nodes
    if nodes == 1:
        return worst_case_rho(l2, scale)
    root_n_scale = math.sqrt(nodes) * scale
    l2s = l2 / root_n_scale
    l1s = l1 / root_n_scale
    linear = l2s**2 + 2 * l1s * tau + tau**2 * dim
    squared = (l2s + math.sqrt(dim) * tau) ** 2
    return 0.5 * min(linear, squared)


def share_scale(l2: float, l1: float, dim: int, rho: float, threshold: int) -> float:
    """The smallest σᵢ ≥ 1 with ``kls_rho(σᵢ, threshold, l2, l1, dim) ≤ rho`` (to 1 part in 10⁹).

    Starts from the nominal Δ₂/√(2ρt)·(1 + 10⁻⁹); if the KLS bound exceeds ρ there, bisects
    upwards. ``kls_rho`` decreases in σᵢ and tends to 0, so the search terminates.
    """
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a positive, finite number, got {rho}")

    def fits(scale: float) -> bool:
        return kls_rho(scale, threshold, l2, l1, dim) <= rho

    low = max(MIN_SHARE_SCALE, l2 / math.sqrt(2 * rho * threshold) * _SLACK)
    if fits(low):
        return low
    # `low` violates the bound; find an upper end that meets it, then bisect between them.
    high = 2 * low
    while not fits(high):
        low, high = high, 2 * high
        if not math.isfinite(high):  # pragma: no cover - needs a ρ far below 1e-300
            raise ValueError(f"no finite share scale meets rho={rho}")
    for _ in range(_BISECT_STEPS):
        if high - low <= high * _BISECT_TOLERANCE:
            break
        mid = (low + high) / 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return high * _SLACK


def worst_case_rho(l2: float, scale: float) -> float:
    """Δ₂²/(2σᵢ²): the cost when a node's own share is the only noise the aggregator cannot remove.

    Exact for a single discrete Gaussian (Canonne, Kamath and Steinke 2020); it equals OpenDP's map
    for ``make_gaussian(scale=σᵢ)`` at Δ₂.
    """
    return l2**2 / (2 * scale**2)


def query_worst_case_rho(spec: QuerySpec, threshold: int) -> float:
    """ρ of one node's own noise shares alone in a secure round of ``spec`` with threshold t,
    summed over the query's measures (what a node's ``secure_max_worst_rho`` policy limits)."""
    if spec.privacy.mechanism is not Mechanism.GAUSSIAN or spec.privacy.rho is None:
        raise ValueError("secure mode needs a rho (zCDP) budget and the gaussian mechanism")
    rho = spec.privacy.rho / len(spec.measures)
    dim = spec.cell_count
    total = []
    for measure in spec.measures:
        sens = sensitivity(measure, spec.bounds, dim)
        total.append(worst_case_rho(sens.l2, share_scale(sens.l2, sens.l1, dim, rho, threshold)))
    return math.fsum(total)
