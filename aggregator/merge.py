"""Merging node answers into sector figures: totals, standard errors, 95% intervals, means, shares.

Pure functions; no I/O. In independent mode node i releases, per cell k, ``y_ik = x_ik + Z_ik``,
with its exact (bounded) aggregate x_ik and integer noise Z_ik of mean 0 and standard deviation
σ_i, independent over nodes, cells and measures. The sector total of the N answering nodes is

    T_k = Σ_i y_ik,   E[T_k] = Σ_i x_ik,   Var(T_k) = Σ_i σ_i²,

and its 95% interval is T_k ± z·√Var(T_k), z = Φ⁻¹(0.975), by the normal approximation to a sum
of independent noise terms. Means and shares are ratios of such totals; their variances come from
the delta method (first-order Taylor expansion around the estimates), in protocol/ratios.py so
that the Python client computes them the same way. See
docs/explanation/merging.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from protocol.calibration import ExpectedNoise, expected_noise, matches
from protocol.messages import QueryAnswer
from protocol.plausibility import implausible
from protocol.query import Measure, QuerySpec
from protocol.ratios import check_length
from protocol.results import Z95, MeasureEstimate

# Reason codes of an answer that cannot be merged (NodeOutcome.reason of an invalid node).
EXACT_ANSWER = "exact_answer"
WRONG_CELLS = "wrong_cells"
WRONG_MEASURES = "wrong_measures"
WRONG_NOISE = "wrong_noise"
IMPLAUSIBLE_VALUE = "implausible_value"

__all__ = [
    "EXACT_ANSWER",
    "IMPLAUSIBLE_VALUE",
    "WRONG_CELLS",
    "WRONG_MEASURES",
    "WRONG_NOISE",
    "estimates",
    "interval",
    "margin",
    "margins",
    "merge_measures",
    "noise_variance",
    "screen",
]


def screen(
    spec: QuerySpec,
    answer: QueryAnswer,
    *,
    accept_exact: bool,
    expected: Mapping[Measure, ExpectedNoise] | None = None,
) -> str | None:
    """Why ``answer`` cannot be merged into a round of ``spec``, as a reason code, or None.

    The answer must have the spec's cells and measures; each measure's mechanism, scale,
    noise SD and sensitivities must be those ``protocol.calibration.expected_noise`` derives
    from the spec (a node cannot claim more or less noise than it must add); and every value
    must lie in ``protocol.plausibility.value_range``. An exact answer (no noise) passes only
    with ``accept_exact`` (a test-only setting), and then must say so: no mechanism, SD 0.
    ``expected``: ``expected_noise(spec)``, when the caller screens many answers of one spec.
    """
    if not answer.noise and not accept_exact:
        return EXACT_ANSWER
    if answer.cells != tuple(spec.cells()) or answer.group_by != spec.group_by:
        return WRONG_CELLS
    if tuple(m.measure for m in answer.measures) != spec.measures or any(
        len(m.values) != spec.cell_count for m in answer.measures
    ):
        return WRONG_MEASURES
    expected = expected if expected is not None else expected_noise(spec)
    for result in answer.measures:
        want = expected[result.measure]
        if not (
            matches(result.sensitivity_l1, want.sensitivity.l1)
            and matches(result.sensitivity_l2, want.sensitivity.l2)
        ):
            return WRONG_NOISE
        if answer.noise:
            honest = (
                result.mechanism is want.mechanism
                and matches(result.scale, want.scale)
                and matches(result.noise_sd, want.noise_sd)
            )
        else:
            honest = result.mechanism is None and result.noise_sd == 0
        if not honest:
            return WRONG_NOISE
    for result in answer.measures:
        if implausible(spec, result.measure, result.values, result.noise_sd):
            return IMPLAUSIBLE_VALUE
    return None


def _check(spec: QuerySpec, cells: tuple[tuple[str, ...], ...], index: int, a: QueryAnswer) -> None:
    """Raise ValueError unless answer ``a`` has exactly the spec's cells and measures."""
    where = f"answer {index} (query {a.query_id!r})"
    if a.group_by != spec.group_by:
        raise ValueError(f"{where} groups by {a.group_by}, the spec by {spec.group_by}")
    if a.cells != cells:
        raise ValueError(f"{where} does not list the spec's cells in canonical order")
    got = [r.measure for r in a.measures]
    if len(got) != len(set(got)) or set(got) != set(spec.measures):
        names = ", ".join(m.value for m in got)
        want = ", ".join(m.value for m in spec.measures)
        raise ValueError(f"{where} has measures [{names}], the spec asks for [{want}]")
    for r in a.measures:
        if len(r.values) != len(cells):
            raise ValueError(
                f"{where} has {len(r.values)} {r.measure.value} values for {len(cells)} cells"
            )
        if not (math.isfinite(r.noise_sd) and r.noise_sd >= 0):
            raise ValueError(f"{where} reports noise_sd={r.noise_sd} for {r.measure.value}")


def merge_measures(spec: QuerySpec, answers: Sequence[QueryAnswer]) -> tuple[MeasureEstimate, ...]:
    """Sum the answers cell by cell, per measure, in the spec's order of measures.

    Estimates are exact integer sums (Python ints never overflow or round). A node's noise has
    the same standard deviation σ_i in every cell of a measure, so the variance Σ_i σ_i² (by
    ``math.fsum``, whose result does not depend on the order of the answers) is too.
    """
    if not answers:
        raise ValueError("cannot merge zero answers; a round needs at least one answer")
    cells = tuple(spec.cells())
    for index, answer in enumerate(answers):
        _check(spec, cells, index, answer)
    merged = []
    for measure in spec.measures:
        results = [answer.measure(measure) for answer in answers]
        totals = tuple(map(sum, zip(*(r.values for r in results), strict=True)))
        merged.append(estimates(measure, totals, noise_variance(r.noise_sd for r in results)))
    return tuple(merged)


def noise_variance(noise_sds: Iterable[float]) -> float:
    """Var of a sum of independent noise terms with these standard deviations: Σ σ_i².

    ``math.fsum`` makes the result independent of the order of the terms. Used for merged
    rounds (independent: one term per answer; secure: one per noise share in the sum) and for
    the accuracy a preview predicts (aggregator/accuracy.py), so the two cannot differ.
    """
    return math.fsum(sd**2 for sd in noise_sds)


def interval(variance: float) -> tuple[float, float]:
    """The standard error √Var and the 95% half-width z·√Var of a cell with this noise variance."""
    se = math.sqrt(variance)
    return se, Z95 * se


def estimates(measure: Measure, totals: Sequence[int], variance: float) -> MeasureEstimate:
    """Per-cell sums with the noise variance every cell shares, as estimates and intervals.

    Independent rounds pass the sum of the answers' variances; secure rounds the sum of the
    noise shares' variances of the nodes whose vectors are in the secure sum.
    """
    se, half = interval(variance)
    values = tuple(int(t) for t in totals)
    return MeasureEstimate(
        measure=measure,
        estimates=values,
        standard_errors=(se,) * len(values),
        lower=tuple(t - half for t in values),
        upper=tuple(t + half for t in values),
    )


def margins(
    spec: QuerySpec, estimate: MeasureEstimate, keep: Sequence[str]
) -> tuple[list[tuple[str, ...]], MeasureEstimate]:
    """Totals over every dimension not in ``keep``: the kept dimensions' value combinations (in
    canonical order) and, per combination, the sum of its cells, with variance the sum of theirs
    (the cells' noise is independent).

    Not for ``persons`` unless ``keep`` is every dimension: a person counted in several cells
    would be counted several times.
    """
    keep = tuple(keep)
    if estimate.measure is Measure.PERSONS and keep != spec.group_by:
        raise ValueError("persons cannot be summed over cells: a person may be in several")
    unknown = [d for d in keep if d not in spec.group_by]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not one of the query's group_by dimensions")
    check_length(spec, estimate)
    positions = [spec.group_by.index(d) for d in keep]
    sums: dict[tuple[str, ...], int] = {}
    variances: dict[tuple[str, ...], list[float]] = {}
    for cell, value, se in zip(
        spec.cells(), estimate.estimates, estimate.standard_errors, strict=True
    ):
        key = tuple(cell[p] for p in positions)
        sums[key] = sums.get(key, 0) + value
        variances.setdefault(key, []).append(se * se)
    keys = list(sums)  # first appearance in the canonical (row-major) cell order
    errors = [math.sqrt(math.fsum(variances[k])) for k in keys]
    totals = [sums[k] for k in keys]
    return keys, MeasureEstimate(
        measure=estimate.measure,
        estimates=tuple(totals),
        standard_errors=tuple(errors),
        lower=tuple(s - Z95 * e for s, e in zip(totals, errors, strict=True)),
        upper=tuple(s + Z95 * e for s, e in zip(totals, errors, strict=True)),
    )


def margin(
    spec: QuerySpec, estimate: MeasureEstimate, keep: str
) -> tuple[tuple[str, ...], MeasureEstimate]:
    """Totals over every dimension but ``keep``: the values of ``keep`` and, per value, the sum of
    its cells with variance the sum of theirs (the cells' noise is independent).

    Not for ``persons``: a person counted in several cells would be counted several times.
    """
    if estimate.measure is Measure.PERSONS:
        raise ValueError("persons cannot be summed over cells: a person may be in several")
    keys, summed = margins(spec, estimate, (keep,))
    return tuple(k[0] for k in keys), summed
