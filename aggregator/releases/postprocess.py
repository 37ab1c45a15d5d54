"""Post-processing of merged figures before publication. Pure functions; no I/O.

Post-processing works on the noisy, merged estimates only, never on raw data, so it costs no
privacy (the post-processing property of differential privacy). The steps, in order:

1. **Non-negativity.** A count cannot be negative; a negative estimate (noise around a small
   true value) is published as 0, and interval bounds below 0 are clipped to 0.
2. **Rounding.** Each figure is rounded to a power of ten that fits its interval: one tenth of
   the interval's half-width, rounded down to a power of ten, and at least 1. A figure of
   4,123,456 ± 4,300 is published as 4,123,500 (step 100): the digits below the step are noise.
3. **Suppression** (optional, CBS-style "."). A cell whose 95% half-width is more than the
   recipe's share of its estimate (or whose estimate is 0) is published without a figure. This
   is for reliability, not confidentiality: differential privacy already protects every cell,
   so no secondary suppression is needed.
4. **Consistent totals.** The total row is the sum of the published (clipped, rounded) cells,
   suppressed cells included, so that a table adds up exactly. Its interval comes from the sum
   of the cells' noise variances (the cells' noise is independent), centred on that total.

See docs/explanation/releases.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.results import Z95


@dataclass(frozen=True)
class Figure:
    """One published figure: value and interval (None when suppressed)."""

    value: float | None
    lower: float | None
    upper: float | None
    standard_error: float
    rounded_to: int
    suppressed: bool


def rounding_step(half_width: float) -> int:
    """The power of ten to round to: a tenth of the half-width, rounded down, at least 1."""
    if not math.isfinite(half_width) or half_width < 10:
        return 1
    return int(10 ** (math.floor(math.log10(half_width)) - 1))


def round_to(value: float, step: int) -> float:
    """Round half away from zero to a multiple of ``step`` (not banker's rounding)."""
    scaled = abs(value) / step
    rounded = math.floor(scaled + 0.5) * step
    return float(math.copysign(rounded, value)) if rounded else 0.0


def shown_from(half_width: float, limit: float | None) -> float | None:
    """The smallest figure a cell with this 95% half-width is published with: half-width/limit.
    Below it the cell is suppressed ("."); None when nothing is suppressed (no limit). The
    half-width does not depend on the data, so a preview can state this before asking."""
    if limit is None:
        return None
    return half_width / limit


def is_too_wide(value: float, half_width: float, limit: float | None) -> bool:
    least = shown_from(half_width, limit)
    if least is None:
        return False
    if value <= 0:
        return half_width > 0
    return value < least


def publish_cell(
    estimate: float,
    standard_error: float,
    *,
    non_negative: bool = True,
    rounding: bool = True,
    suppress_above: float | None = None,
    scale: float = 1.0,
) -> Figure:
    """Post-process one merged cell. ``scale`` converts units first (cents → euros: 0.01)."""
    value = estimate * scale
    se = standard_error * scale
    half = Z95 * se
    lower, upper = value - half, value + half
    if non_negative:
        value, lower, upper = max(value, 0.0), max(lower, 0.0), max(upper, 0.0)
    step = rounding_step(half) if rounding else 1
    if rounding:
        value, lower, upper = round_to(value, step), round_to(lower, step), round_to(upper, step)
    if is_too_wide(value, half, suppress_above):
        return Figure(None, None, None, se, step, True)
    return Figure(value, lower, upper, se, step, False)


def publish_total(
    cells: Sequence[Figure],
    published_values: Sequence[float],
    *,
    non_negative: bool = True,
) -> Figure:
    """The total row: the sum of the published cell values (suppressed ones included, from
    ``published_values``), with the interval of the sum of the cells' noise."""
    total = math.fsum(published_values)
    se = math.sqrt(math.fsum(c.standard_error**2 for c in cells))
    half = Z95 * se
    lower, upper = total - half, total + half
    if non_negative:
        lower, upper = max(lower, 0.0), max(upper, 0.0)
    step = rounding_step(half)
    return Figure(total, round_to(lower, step), round_to(upper, step), se, step, False)


def publish_table(
    estimates: Sequence[float],
    standard_errors: Sequence[float],
    *,
    non_negative: bool = True,
    rounding: bool = True,
    suppress_above: float | None = None,
    scale: float = 1.0,
    with_total: bool = True,
) -> tuple[list[Figure], Figure | None]:
    """Post-process the cells of one table and, for additive measures, its total row."""
    cells: list[Figure] = []
    values: list[float] = []
    for estimate, se in zip(estimates, standard_errors, strict=True):
        cells.append(
            publish_cell(
                estimate,
                se,
                non_negative=non_negative,
                rounding=rounding,
                suppress_above=suppress_above,
                scale=scale,
            )
        )
        # A suppressed cell still counts in the total, with the value it would have had.
        shown = publish_cell(
            estimate, se, non_negative=non_negative, rounding=rounding, scale=scale
        )
        assert shown.value is not None
        values.append(shown.value)
    if not with_total:
        return cells, None
    return cells, publish_total(cells, values, non_negative=non_negative)
