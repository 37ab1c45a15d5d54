"""Rich tables of a DP answer for the operator: estimates with 95% intervals."""

from __future__ import annotations

import math
from collections import defaultdict

from rich.table import Table

from protocol.catalogue import DIMENSIONS
from protocol.messages import MeasureResult, QueryAnswer
from protocol.query import Mechanism

Z95 = 1.959963984540054

_MEASURE_LABELS = {
    "visits": {"nl": "bezoeken", "en": "visits"},
    "persons": {"nl": "personen", "en": "persons"},
    "revenue": {"nl": "omzet (€)", "en": "revenue (€)"},
}


def margin95(result: MeasureResult) -> float:
    """Half-width of a 95% interval for one released cell.

    Discrete Laplace with P(k) ∝ q^|k|, q = e^(-1/b): P(|X| > k) = 2q^(k+1)/(1+q), so the exact
    integer half-width is the smallest k with that ≤ 0.05. The discrete Gaussian (σ ≥ 1 in
    practice) is within rounding of the normal quantile, 1.96σ.
    """
    if result.mechanism is None:
        return 0.0
    if result.mechanism is Mechanism.LAPLACE:
        q = math.exp(-1.0 / result.scale)
        k = math.log(0.05 * (1 + q) / 2) / math.log(q) - 1
        return float(max(0, math.ceil(k - 1e-12)))
    return Z95 * result.noise_sd


def _fmt(value: float, half_width: float, money: bool) -> str:
    if money:
        return f"{value / 100:,.0f} ± {half_width / 100:,.0f}"
    return f"{value:,.0f} ± {half_width:,.0f}"


def answer_table(answer: QueryAnswer, *, lang: str = "nl", limit: int = 40) -> Table:
    """One row per cell (the first ``limit``), each measure as estimate ± 95% half-width."""
    title = "Antwoord (met 95%-marge)" if lang == "nl" else "Answer (with 95% margin)"
    table = Table(title=title)
    for name in answer.group_by:
        dim = DIMENSIONS[name]
        table.add_column(dim.nl if lang == "nl" else dim.en)
    for result in answer.measures:
        table.add_column(_MEASURE_LABELS[result.measure.value][lang], justify="right")
    for i, cell in enumerate(answer.cells[:limit]):
        labels = [DIMENSIONS[n].label(c, lang) for n, c in zip(answer.group_by, cell, strict=True)]
        values = [
            _fmt(r.values[i], margin95(r), r.measure.value == "revenue") for r in answer.measures
        ]
        table.add_row(*labels, *values)
    if len(answer.cells) > limit:
        more = len(answer.cells) - limit
        table.caption = (
            f"… nog {more} cellen (gebruik --json voor alles)"
            if lang == "nl"
            else f"… {more} more cells (use --json for all)"
        )
    return table


def margin_table(answer: QueryAnswer, dimension: str, *, lang: str = "nl") -> Table:
    """Totals over all other dimensions, by ``dimension`` (post-processing of released cells).

    A sum of k independent noisy cells has noise sd √k·σ; its 95% margin uses the normal
    approximation 1.96·√k·σ. ``persons`` summed over cells counts a person once per cell, so it is
    not shown here.
    """
    position = answer.group_by.index(dimension)
    dim = DIMENSIONS[dimension]
    label = dim.nl if lang == "nl" else dim.en
    table = Table(title=("Totaal per " if lang == "nl" else "Total by ") + label)
    table.add_column(label)
    shown = [r for r in answer.measures if r.measure.value != "persons"]
    for result in shown:
        table.add_column(_MEASURE_LABELS[result.measure.value][lang], justify="right")
    sums: dict[str, list[int]] = defaultdict(lambda: [0] * len(shown))
    counts: dict[str, int] = defaultdict(int)
    for i, cell in enumerate(answer.cells):
        key = cell[position]
        counts[key] += 1
        for j, result in enumerate(shown):
            sums[key][j] += result.values[i]
    for key, values in sums.items():
        cells = [
            _fmt(v, Z95 * r.noise_sd * math.sqrt(counts[key]), r.measure.value == "revenue")
            for v, r in zip(values, shown, strict=True)
        ]
        table.add_row(dim.label(key, lang), *cells)
    return table
