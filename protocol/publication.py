"""How one figure is published: its 95% interval, the rounding of its bounds, and suppression.

The one rule for showing a figure, used by the public site (``aggregator.releases``), the CLI and
the Python client, so that all three publish, round and flag the same cells. Per figure:

1. **The interval.** The 95% interval is the figure ± 1.96 × its table's noise standard error
   (the noise of the round it comes from; the release's consistency step, which can only reduce
   the variance, is not credited, so the interval is conservative). With non-negativity, bounds
   below 0 are clipped to 0.
2. **Rounding the bounds.** The interval's bounds are rounded to a power of ten that fits it
   (a tenth of the half-width, rounded down to a power of ten, at least 1): the digits below
   that step are noise. The figure itself stays a whole number, so that tables add up.
3. **Suppression** (optional, CBS-style "."). A cell whose 95% half-width is more than the
   recipe's share of its figure (or whose figure is 0) is published without a figure. This
   is for reliability, not confidentiality: differential privacy already protects every cell,
   so no secondary suppression is needed. The total still counts the suppressed cells, so when
   a table has a ".", its visible cells add up to less than its total; the page says so.

Everything here works on noisy, merged figures only, never on raw data, so it costs no privacy
(the post-processing property of differential privacy). See docs/explanation/releases.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.results import Z95

# The public site's default reliability rule: a cell whose 95% half-width is more than this share
# of its estimate is published as "." (``publish_figure``). The CLI and the Python client flag the
# same cells (aggregator.client.presentation).
SUPPRESS_RELATIVE_HALFWIDTH = 0.5


@dataclass(frozen=True)
class Figure:
    """One published figure: value and interval (None when suppressed)."""

    value: float | None
    lower: float | None
    upper: float | None
    standard_error: float
    rounded_to: int | None  # 1: a whole number (controlled rounding); None: not rounded
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


def publish_figure(
    value: float,
    standard_error: float,
    *,
    non_negative: bool = True,
    rounding: bool = True,
    suppress_above: float | None = None,
) -> Figure:
    """One figure after the consistency step: its interval, and "." when too uncertain."""
    half = Z95 * standard_error
    lower, upper = value - half, value + half
    if non_negative:
        lower, upper = max(lower, 0.0), max(upper, 0.0)
    step = rounding_step(half) if rounding else 1
    if rounding:
        lower, upper = round_to(lower, step), round_to(upper, step)
        # The figure is a whole number (controlled rounding); the bounds never exclude it.
        lower, upper = min(lower, value), max(upper, value)
    if is_too_wide(value, half, suppress_above):
        return Figure(None, None, None, standard_error, None, True)
    return Figure(value, lower, upper, standard_error, 1 if rounding else None, False)
