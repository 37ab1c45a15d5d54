"""The helpers' dummy counts, drawn by OpenDP: the only reach module that imports OpenDP.

Each count is s + clamp(X, −s, s) with X from OpenDP's exact discrete Gaussian sampler
(``make_gaussian`` on an i64 vector, which samples with OpenSSL's CSPRNG; it cannot be seeded and
must not be). Before sampling, OpenDP's own privacy map must confirm that the plan's scale costs
at most ρ at the histogram's sensitivity √2.
"""

from __future__ import annotations

from typing import Any

# The submodules, not opendp.prelude (which also imports OpenDP's polars and sklearn extras).
import numpy as np
import numpy.typing as npt
import opendp.domains as dp_domains
import opendp.measurements as dp_m
import opendp.metrics as dp_metrics
from opendp.mod import enable_features

from protocol.reach.calibration import HISTOGRAM_L2, DummyPlan

enable_features("contrib")

_VECTOR = dp_domains.vector_domain(dp_domains.atom_domain(T="i64"))


class CalibrationError(RuntimeError):
    """OpenDP's privacy map charges more than the plan's ρ (never expected)."""


def _gaussian(scale: float) -> Any:
    return dp_m.make_gaussian(_VECTOR, dp_metrics.l2_distance(T="f64"), scale=scale)


def draw_dummy_counts(plan: DummyPlan) -> npt.NDArray[np.int64]:
    """One helper's dummy count per value: s + clamp(N_Z(0, σ²), −s, s), in [0, 2s]."""
    measurement = _gaussian(plan.scale)
    spent = float(measurement.map(HISTOGRAM_L2))
    if spent > plan.rho:
        raise CalibrationError(f"OpenDP charges rho={spent} for a budget of {plan.rho}")
    noise = np.asarray(measurement([0] * plan.values), dtype=np.int64)
    return np.clip(noise, -plan.shift, plan.shift) + plan.shift
