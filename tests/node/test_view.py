"""The operator's tables: 95% margins per mechanism."""

from __future__ import annotations

import math

import numpy as np

from node.privacy.noise import noise_sd
from node.view import Z95, margin95
from protocol.messages import MeasureResult
from protocol.query import Measure, Mechanism


def _result(mechanism: Mechanism | None, scale: float) -> MeasureResult:
    sd = 0.0 if mechanism is None else noise_sd(mechanism, scale)
    return MeasureResult(
        measure=Measure.VISITS,
        values=(0,),
        mechanism=mechanism,
        scale=scale,
        noise_sd=sd,
        sensitivity_l1=1.0,
        sensitivity_l2=1.0,
        rho=0.1,
    )


def _laplace_coverage(scale: float, half_width: int) -> float:
    q = math.exp(-1 / scale)
    ks = np.arange(-half_width, half_width + 1)
    return float(np.sum((1 - q) / (1 + q) * q ** np.abs(ks)))


def test_laplace_margin_is_the_smallest_integer_with_95_percent_coverage() -> None:
    for scale in (0.5, 1.6, 12.0, 250.0):
        k = int(margin95(_result(Mechanism.LAPLACE, scale)))
        assert _laplace_coverage(scale, k) >= 0.95
        assert k == 0 or _laplace_coverage(scale, k - 1) < 0.95
        # and it is wider than the normal approximation would claim
        assert k >= Z95 * noise_sd(Mechanism.LAPLACE, scale) - 1


def test_gaussian_margin_is_196_sd_and_none_without_noise() -> None:
    assert margin95(_result(Mechanism.GAUSSIAN, 10.0)) == Z95 * 10.0
    assert margin95(_result(None, 10.0)) == 0.0
