"""Aggregator side: what a malicious node's distortion of a count histogram can be checked against.

A node may send any share; the helpers cannot see what it encodes (docs/explanation/
reach-privacy.md §5). Two checks on the noisy histogram bound what it can add unseen:

* **Weight.** Σ_v v·H_v is exactly the sum of all nodes' weights (for presence: the number of
  node–person records, which the aggregator also has from the nodes' own DP *persons* answers),
  as long as no bucket wraps past 255. Only values up to ``max_value`` are summed, so the noise
  stays small: SD = √(noise variance · Σ_{v ≤ max_value} v²).
* **Implausible values.** Honest sectors leave values above ``max_value`` (for presence: more
  institutions than a few colliding persons reach) empty; a count there far beyond the noise
  (z = 6 SDs by default) means someone put weight where no honest node does, for example −1 = 255
  on empty buckets to offset an inflated weight.

These bound, they do not prevent: within the checks' tolerance a node can add fake persons, as a
fabricated import could anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocol.reach.errors import ReachInputError
from protocol.reach.estimate import Z95, Interval

DEFAULT_Z = 6.0


@dataclass(frozen=True, slots=True)
class Plausibility:
    """The histogram's total weight up to ``max_value``, and the values above it that are
    occupied beyond the noise."""

    max_value: int
    weight: Interval
    implausible: tuple[int, ...]

    def weight_matches(self, expected: float, expected_sd: float = 0.0) -> bool:
        """True when the weight agrees with ``expected`` (e.g. the summed DP persons answers,
        with their SD) within a 95% band of both uncertainties."""
        return abs(self.weight.estimate - expected) <= Z95 * math.hypot(self.weight.sd, expected_sd)

    @property
    def ok(self) -> bool:
        return not self.implausible


def check(
    hist: npt.ArrayLike, noise_variance: float, max_value: int, z: float = DEFAULT_Z
) -> Plausibility:
    """Plausibility of a noisy count histogram (256 values) whose honest values are ≤ max_value."""
    h = np.asarray(hist, dtype=np.float64)
    if h.shape != (256,):
        raise ReachInputError("a count histogram has 256 values")
    if not 1 <= max_value <= 255 or noise_variance < 0 or z <= 0:
        raise ReachInputError("max_value is in [1, 255], the noise variance and z positive")
    v = np.arange(256, dtype=np.float64)
    kept = v <= max_value
    weight = float(v[kept] @ h[kept])
    sd = math.sqrt(noise_variance * float(v[kept] @ v[kept]))
    limit = z * math.sqrt(noise_variance) if noise_variance > 0 else 0.0
    high = tuple(int(x) for x in np.flatnonzero(~kept & (h > limit)))
    return Plausibility(max_value, Interval(weight, sd), high)
