"""Noise shares for secure rounds: how much discrete-Gaussian noise each node adds.

In secure mode each node adds a *share* of noise, a discrete Gaussian N_Z(0, σᵢ²) drawn by OpenDP
through ``node.privacy.noise``, and masks the result; the aggregator learns only the sum. The shares
are sized so that the noise of any ``threshold`` (t) honest nodes together meets the query's ρ:
σᵢ ≈ σ/√t, where σ = Δ₂/√(2ρ) is what a single trusted curator would add, raised where the
Kairouz–Liu–Steinke bound for sums of discrete Gaussians needs it and never below σᵢ = 1. The
arithmetic (``share_scale``, ``kls_rho``, ``worst_case_rho``) is in ``protocol.noise_shares``,
shared with the aggregator; the proof that the released sum is ρ-zCDP when at least t
responding nodes are honest is in docs/explanation/secure-noise.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.privacy.noise import Calibration
from protocol.calibration import expected_share_noise
from protocol.noise_shares import worst_case_rho
from protocol.query import Measure, Mechanism, QuerySpec
from protocol.sensitivity import Sensitivity


@dataclass(frozen=True, slots=True)
class SecureCalibration:
    """One measure's noise share in a secure round.

    ``rho`` is this measure's part of the query's budget, which the sum of the shares of any
    ``threshold`` honest nodes meets (KLS bound); ``rho_worst`` is the cost if every other node
    colludes with the aggregator and only this node's own share protects its data.
    """

    measure: Measure
    scale: float
    noise_sd: float  # exact SD of one share
    sensitivity: Sensitivity
    rho: float
    rho_worst: float

    def calibration(self) -> Calibration:
        """The share as an ordinary calibration, for ``node.privacy.noise.add_noise``."""
        return Calibration(
            Mechanism.GAUSSIAN, self.scale, self.sensitivity, rho=self.rho_worst, epsilon=None
        )


def secure_calibrations(spec: QuerySpec, threshold: int) -> dict[Measure, SecureCalibration]:
    """Share scales per measure, the query's ρ split evenly over its measures as in ``release``
    (``protocol.calibration.expected_share_noise``, which the aggregator checks answers with)."""
    shares = expected_share_noise(spec, threshold)  # refuses a spec without ρ (gaussian)
    rho = spec.rho_per_measure()
    return {
        measure: SecureCalibration(
            measure=measure,
            scale=share.scale,
            noise_sd=share.noise_sd,
            sensitivity=share.sensitivity,
            rho=rho,
            rho_worst=worst_case_rho(share.sensitivity.l2, share.scale),
        )
        for measure, share in shares.items()
    }
