"""Noise: the only module that imports OpenDP.

Scales are computed in closed form (no binary search); OpenDP's own privacy map then checks each
measurement before it runs, and OpenDP samples the integer noise (discrete Gaussian under zCDP,
discrete Laplace under pure DP) with its exact, cryptographically seeded samplers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The submodules, not opendp.prelude: the prelude also imports OpenDP's scikit-learn and polars
# extras when those happen to be installed, which costs every CLI start over a second.
import opendp.domains as dp_domains
import opendp.measurements as dp_m
import opendp.metrics as dp_metrics
from opendp.mod import enable_features

from protocol.calibration import gaussian_scale, laplace_scale, noise_sd
from protocol.privacy_loss import zcdp_to_epsilon
from protocol.query import Mechanism
from protocol.sensitivity import Sensitivity

enable_features("contrib")

_VECTOR = dp_domains.vector_domain(dp_domains.atom_domain(T="i64"))
# The scales and their SDs come from ``protocol.calibration``, which the aggregator uses to
# check every answer; ``noise_sd`` is re-exported here for the node's callers, and so is
# ``zcdp_to_epsilon``, the one ρ → (ε, δ) conversion that nodes, aggregator and pages share.
__all__ = [
    "Calibration",
    "CalibrationError",
    "add_noise",
    "calibrate_gaussian",
    "calibrate_laplace",
    "noise_sd",
    "zcdp_to_epsilon",
]


class CalibrationError(RuntimeError):
    """OpenDP's privacy map disagrees with the closed-form calibration (never expected)."""


@dataclass(frozen=True, slots=True)
class Calibration:
    mechanism: Mechanism
    scale: float
    sensitivity: Sensitivity
    rho: float  # zCDP cost of this measurement (ε²/2 for Laplace)
    epsilon: float | None  # pure-DP cost, Laplace only

    @property
    def noise_sd(self) -> float:
        return noise_sd(self.mechanism, self.scale)


def _gaussian(scale: float) -> Any:
    return dp_m.make_gaussian(_VECTOR, dp_metrics.l2_distance(T="f64"), scale=scale)


def _laplace(scale: float) -> Any:
    return dp_m.make_laplace(_VECTOR, dp_metrics.l1_distance(T="i64"), scale=scale)


def calibrate_gaussian(sens: Sensitivity, rho: float) -> Calibration:
    """Smallest discrete-Gaussian scale with Δ₂²/(2σ²) ≤ ρ, checked by OpenDP's map."""
    scale = gaussian_scale(sens, rho)
    spent = float(_gaussian(scale).map(sens.l2))
    if spent > rho:
        raise CalibrationError(f"OpenDP charges ρ={spent} for a budget of {rho}")
    return Calibration(Mechanism.GAUSSIAN, scale, sens, rho=rho, epsilon=None)


def calibrate_laplace(sens: Sensitivity, epsilon: float) -> Calibration:
    """Smallest discrete-Laplace scale with Δ₁/b ≤ ε, checked by OpenDP's map."""
    scale = laplace_scale(sens, epsilon)
    spent = float(_laplace(scale).map(math.ceil(sens.l1)))
    if spent > epsilon:
        raise CalibrationError(f"OpenDP charges ε={spent} for a budget of {epsilon}")
    return Calibration(Mechanism.LAPLACE, scale, sens, rho=epsilon**2 / 2, epsilon=epsilon)


def add_noise(values: Sequence[int], calibration: Calibration) -> list[int]:
    """Release ``values`` with OpenDP's integer noise at the calibrated scale."""
    if calibration.mechanism is Mechanism.GAUSSIAN:
        measurement = _gaussian(calibration.scale)
    else:
        measurement = _laplace(calibration.scale)
    return [int(v) for v in measurement([int(v) for v in values])]
