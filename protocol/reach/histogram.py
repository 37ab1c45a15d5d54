"""Aggregator side: from the helpers' two shuffled vectors to the noisy histogram of values.

The aggregator adds the two vectors (``shares.reconstruct``), counts each value (for pattern
vectors, the value of a row is the set of its non-zero digits, bit c for category c), checks
that the number of entries fits the dummy plan, and subtracts the dummies' shift 2s (one s per
helper) from every value's count. What remains is H_v + noise with E[noise] = 0 and variance
``plan.noise_variance``; it can be negative in a value no bucket has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.reach.calibration import HELPERS, DummyPlan
from protocol.reach.errors import ReachInputError
from protocol.reach.layout import Kind, Layout
from protocol.reach.shares import reconstruct


def value_counts(values: npt.NDArray[Any], layout: Layout) -> npt.NDArray[np.int64]:
    """How many entries show each of the layout's values."""
    if layout.kind is Kind.COUNT:
        keys = values.astype(np.int64)
    else:
        bits = (values != 0).astype(np.int64)
        keys = bits @ (np.int64(1) << np.arange(layout.categories, dtype=np.int64))
    return np.bincount(keys, minlength=layout.values).astype(np.int64)


def noisy_histogram(
    share_a: object, share_b: object, layout: Layout, plan: DummyPlan
) -> npt.NDArray[np.int64]:
    """H_v + noise_v for every value v: the aggregator's whole input to the estimates."""
    if plan.values != layout.values:
        raise ReachInputError("the dummy plan is for another layout")
    values = reconstruct(share_a, share_b, layout)
    dummies = values.shape[0] - layout.buckets
    if dummies > HELPERS * plan.max_dummies:
        raise ReachInputError(
            f"{dummies} entries beyond the buckets, more than the plan's dummies allow"
        )
    return value_counts(values, layout) - HELPERS * plan.shift
