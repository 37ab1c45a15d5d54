"""Turn exact, bounded aggregates into a DP release: calibrate per measure, add noise, account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from node.privacy.noise import (
    Calibration,
    add_noise,
    calibrate_gaussian,
    calibrate_laplace,
    zcdp_to_epsilon,
)
from protocol.messages import MeasureResult, PrivacySpent
from protocol.query import Measure, Mechanism, QuerySpec
from protocol.sensitivity import sensitivity


def calibrations(spec: QuerySpec) -> dict[Measure, Calibration]:
    """The query's cost split evenly over its measures (as OpenDP's Polars context does)."""
    share = len(spec.measures)
    result: dict[Measure, Calibration] = {}
    for measure in spec.measures:
        sens = sensitivity(measure, spec.bounds, spec.cell_count)
        if spec.privacy.mechanism is Mechanism.GAUSSIAN:
            assert spec.privacy.rho is not None
            result[measure] = calibrate_gaussian(sens, spec.privacy.rho / share)
        else:
            assert spec.privacy.epsilon is not None
            result[measure] = calibrate_laplace(sens, spec.privacy.epsilon / share)
    return result


def privacy_spent(spec: QuerySpec) -> PrivacySpent:
    privacy = spec.privacy
    if privacy.mechanism is Mechanism.LAPLACE:
        assert privacy.epsilon is not None
        return PrivacySpent(rho=privacy.rho_charged, epsilon=privacy.epsilon, delta=0.0)
    return PrivacySpent(
        rho=privacy.rho_charged,
        epsilon=zcdp_to_epsilon(privacy.rho_charged, privacy.delta),
        delta=privacy.delta,
    )


def release(
    spec: QuerySpec, exact: Mapping[Measure, Sequence[int]], *, noise: bool = True
) -> tuple[MeasureResult, ...]:
    """Noisy values per measure. ``noise=False`` exists for tests only (see NodeSettings)."""
    results = []
    for measure, cal in calibrations(spec).items():
        values = list(exact[measure])
        released = add_noise(values, cal) if noise else values
        results.append(
            MeasureResult(
                measure=measure,
                values=tuple(released),
                mechanism=cal.mechanism if noise else None,
                scale=cal.scale,
                noise_sd=cal.noise_sd if noise else 0.0,
                sensitivity_l1=cal.sensitivity.l1,
                sensitivity_l2=cal.sensitivity.l2,
                rho=cal.rho,
                epsilon=cal.epsilon,
            )
        )
    return tuple(results)
