"""How a merged estimate is shown to people: never negative, in euros, flagged when too wide.

The wire format (``RoundResult``: ``MeasureEstimate``, ``RatioEstimate``) keeps what the merge
computed: raw noisy sums that may be negative, revenue and ``mean_price`` in cents. What the CLI,
the Python client's rows and data frames and ``publieksdata ask --csv`` show is this module's
:class:`Series`:

* **non-negative**: a count, an amount, a mean or a share below 0 (noise around a small true
  value) is shown as 0 and its interval is clipped at 0, as on the public site; the estimate as
  merged stays available as ``raw`` (the ``<name>_raw`` column);
* **euros**: revenue and means of revenue are in euros, and their names say so (``revenue_eur``,
  ``mean_price_eur``);
* **flagged when too wide**: ``too_wide`` marks a figure whose 95% interval is too wide to be
  useful, by the public site's own rule: ``protocol.publication.publish_figure`` with the
  recipes' default limit (``SUPPRESS_RELATIVE_HALFWIDTH``, 50%), the function that makes the
  site publish such a cell as ".". Counts and amounts are judged exactly as the site judges
  them (clamped, in euros, rounded as published); means and shares, which the site does not
  publish, are judged clamped and unrounded.

Pure functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.publication import SUPPRESS_RELATIVE_HALFWIDTH, publish_figure
from protocol.query import Measure
from protocol.results import MeasureEstimate, RatioEstimate

EUROS_PER_CENT = 0.01


@dataclass(frozen=True)
class Series:
    """One measure, mean or share over all cells, as shown. ``name`` is its column name (with
    the unit for money: ``revenue_eur``); ``kind`` is ``count``, ``money`` (euros), ``price``
    (euros per unit) or ``share`` (a fraction). Per cell: ``values`` (never negative) with their
    ``standard_errors`` and 95% interval ``lower``–``upper`` (clipped at 0), ``raw`` (the
    estimate as merged, in the same unit, possibly negative) and ``too_wide``. A cell without a
    value (a mean without visits) has None everywhere."""

    name: str
    kind: str
    values: tuple[float | None, ...]
    raw: tuple[float | None, ...]
    standard_errors: tuple[float | None, ...]
    lower: tuple[float | None, ...]
    upper: tuple[float | None, ...]
    too_wide: tuple[bool | None, ...]


def _kind(estimate: MeasureEstimate | RatioEstimate) -> tuple[str, str, float]:
    """The column name, kind and scale (cents → euros) of an estimate."""
    if isinstance(estimate, MeasureEstimate):
        if estimate.measure is Measure.REVENUE:
            return f"{estimate.measure.value}_eur", "money", EUROS_PER_CENT
        return estimate.measure.value, "count", 1.0
    if estimate.denominator.startswith(f"{estimate.numerator} summed over "):
        return (
            estimate.name,
            "share",
            1.0,
        )  # ratios.shares: a fraction, whatever the measure
    if estimate.numerator == Measure.REVENUE.value:
        return f"{estimate.name}_eur", "price", EUROS_PER_CENT
    return estimate.name, "ratio", 1.0


def _clamp(value: float) -> float:
    """``value``, or 0 of the same type (an int count stays an int) when it is below 0."""
    return max(value, 0) if isinstance(value, int) else max(value, 0.0)


def present(
    estimate: MeasureEstimate | RatioEstimate, *, limit: float = SUPPRESS_RELATIVE_HALFWIDTH
) -> Series:
    """``estimate`` as shown: clamped at 0, in euros for money, with the public site's flag."""
    name, kind, scale = _kind(estimate)
    counted = isinstance(estimate, MeasureEstimate)  # published on the site, so rounded there
    values: list[float | None] = []
    raw: list[float | None] = []
    errors: list[float | None] = []
    lower: list[float | None] = []
    upper: list[float | None] = []
    too_wide: list[bool | None] = []
    for value, se, low, high in zip(
        estimate.estimates, estimate.standard_errors, estimate.lower, estimate.upper, strict=True
    ):
        if value is None or se is None or low is None or high is None:
            for column in (values, raw, errors, lower, upper, too_wide):
                column.append(None)
            continue
        # As the site judges a figure: in the published unit, clamped at 0 and, for counts and
        # amounts, a whole number (the release's rounding).
        shown_value = max(float(value) * scale, 0.0)
        judged = publish_figure(
            float(round(shown_value)) if counted else shown_value,
            se * scale,
            rounding=counted,
            suppress_above=limit,
        )
        per = round(1 / scale)  # divide by 100 for euros: 57 / 100 is 0.57, 57 * 0.01 is not
        shown = value / per if per != 1 else value
        values.append(_clamp(shown))
        raw.append(shown)
        errors.append(se / per)
        lower.append(max(low / per, 0.0))
        upper.append(max(high / per, 0.0))
        too_wide.append(judged.suppressed)
    return Series(
        name, kind, tuple(values), tuple(raw), tuple(errors), tuple(lower), tuple(upper),
        tuple(too_wide),
    )  # fmt: skip
