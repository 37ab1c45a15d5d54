"""The accuracy a round will have, predicted from its spec alone. Pure functions; no I/O.

A node's noise does not depend on its data: its standard deviation follows from the spec
(``protocol.calibration``: full noise per node in independent mode, a noise share sized for the
threshold t in secure mode). A merged cell sums one such term per answering node, so its
variance, standard error and 95% half-width are known before anyone is asked, and are computed
here with the very functions the merge uses (``aggregator.merge.noise_variance`` and
``interval``): a preview and the realised round cannot disagree. Whether a cell is suppressed
on a release page also depends on its estimate; what can be said beforehand is the smallest
figure that is shown (``protocol.publication.shown_from``). See
docs/explanation/merging.md, "Predicting the half-width".
"""

from __future__ import annotations

import math

from aggregator.merge import interval, noise_variance
from aggregator.releases.recipe import Recipe
from protocol.calibration import expected_noise, expected_share_noise
from protocol.preview import MeasurePreview
from protocol.publication import shown_from
from protocol.query import Mode, QuerySpec

# The suppression rule of the standard release recipe (``Recipe.post_processing``).
STANDARD_SUPPRESSION: float | None = Recipe.model_fields[
    "post_processing"
].default.suppress_relative_halfwidth


def predict(
    spec: QuerySpec,
    answering: int,
    threshold: int | None = None,
    suppress_above: float | None = STANDARD_SUPPRESSION,
) -> tuple[MeasurePreview, ...]:
    """Each measure's noise, standard error and 95% half-width per cell when ``answering``
    nodes answer (secure mode: their noise shares are in the sum, sized for ``threshold``)."""
    if answering < 1:
        raise ValueError(f"answering must be at least 1, got {answering}")
    if spec.mode is Mode.SECURE:
        if threshold is None:
            raise ValueError("a secure round needs its threshold")
        noise = expected_share_noise(spec, threshold)
    else:
        noise = expected_noise(spec)
    result = []
    for measure in spec.measures:
        sd = noise[measure].noise_sd
        se, half = interval(noise_variance([sd] * answering))
        result.append(
            MeasurePreview(
                measure=measure,
                noise_sd=sd,
                terms=answering,
                standard_error=se,
                half_width=half,
                shown_from=shown_from(half, suppress_above),
            )
        )
    return tuple(result)


def summed_over(
    cell: MeasurePreview,
    spec: QuerySpec,
    by: tuple[str, ...] | None,
    suppress_above: float | None = STANDARD_SUPPRESSION,
) -> MeasurePreview:
    """The accuracy of a release table that shows ``cell``'s measure by the dimensions ``by``
    only: each of its cells sums the query cells of the dimensions it leaves out, and with them
    their noise terms (``aggregator.releases.compose`` sums them the same way). ``by`` None: all
    of the round's dimensions, so nothing is summed."""
    kept = set(by or spec.group_by)
    summed = math.prod(len(spec.domain(d)) for d in spec.group_by if d not in kept)
    terms = cell.terms * summed
    se, half = interval(noise_variance([cell.noise_sd] * terms))
    return MeasurePreview(
        measure=cell.measure,
        noise_sd=cell.noise_sd,
        terms=terms,
        standard_error=se,
        half_width=half,
        shown_from=shown_from(half, suppress_above),
    )
