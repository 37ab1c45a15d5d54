"""The one ρ → (ε, δ) conversion (protocol.privacy_loss), against OpenDP's."""

from __future__ import annotations

import math

import opendp.prelude as dp
import pytest

from aggregator.releases import compose
from node.privacy import noise
from protocol.privacy_loss import bun_steinke_epsilon, zcdp_delta, zcdp_to_epsilon

dp.enable_features("contrib")


@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.25, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-7, 1e-10])
def test_the_conversion_is_opendps(rho: float, delta: float) -> None:
    vector = dp.vector_domain(dp.atom_domain(T="i64"))
    gaussian = dp.m.make_gaussian(vector, dp.l2_distance(T="f64"), scale=1.0)
    direct = dp.c.make_zCDP_to_approxDP(gaussian).map(math.sqrt(2 * rho)).epsilon(delta=delta)
    ours = zcdp_to_epsilon(rho, delta)
    assert ours == pytest.approx(direct, rel=1e-12)
    assert zcdp_delta(rho, ours) <= delta  # the safe side
    assert ours <= bun_steinke_epsilon(rho, delta)


def test_node_and_aggregator_use_the_same_function() -> None:
    assert noise.zcdp_to_epsilon is zcdp_to_epsilon
    assert compose.zcdp_to_epsilon is zcdp_to_epsilon
    assert zcdp_to_epsilon(0.0, 1e-7) == 0.0
    with pytest.raises(ValueError, match="delta"):
        zcdp_to_epsilon(0.1, 0.0)
