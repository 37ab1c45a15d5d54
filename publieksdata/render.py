"""Rich tables of a merged round result: coverage, margins, means. Dutch or English labels."""

from __future__ import annotations

from rich.table import Table

from aggregator.merge import margin, ratio
from protocol.catalogue import DIMENSIONS
from protocol.query import Measure
from protocol.results import Z95, NodeStatus, RoundResult

MEASURE_LABELS = {
    "visits": {"nl": "bezoeken", "en": "visits"},
    "persons": {"nl": "personen", "en": "persons"},
    "revenue": {"nl": "omzet (€)", "en": "revenue (€)"},
    "mean_price": {"nl": "gem. prijs (€)", "en": "mean price (€)"},
}
STATUS_LABELS = {
    NodeStatus.ANSWERED: {"nl": "beantwoord", "en": "answered"},
    NodeStatus.REFUSED: {"nl": "geweigerd", "en": "refused"},
    NodeStatus.TIMED_OUT: {"nl": "te laat / onbereikbaar", "en": "timed out"},
    NodeStatus.INVALID: {"nl": "ongeldig antwoord", "en": "invalid answer"},
    NodeStatus.PENDING: {"nl": "wacht nog", "en": "pending"},
}


def interval(value: float, lower: float, upper: float, *, money: bool = False) -> str:
    """'1,234 (1,100 – 1,368)'; money is given in cents and shown in euros."""
    scale = 100 if money else 1
    return f"{value / scale:,.0f} ({lower / scale:,.0f} – {upper / scale:,.0f})"


def coverage_table(result: RoundResult, *, lang: str = "nl") -> Table:
    nl = lang == "nl"
    c = result.coverage
    title = (
        f"Dekking: {c.answered} van {c.total} instellingen beantwoordden"
        if nl
        else f"Coverage: {c.answered} of {c.total} institutions answered"
    )
    table = Table(title=title)
    table.add_column("instelling" if nl else "institution")
    table.add_column("status")
    table.add_column("reden" if nl else "reason")
    for node in c.nodes:
        table.add_row(node.institution, STATUS_LABELS[node.status][lang], node.reason or "")
    if result.partial:
        table.caption = (
            "Gedeeltelijk resultaat: de totalen omvatten alleen de instellingen die antwoordden."
            if nl
            else "Partial result: the totals cover only the institutions that answered."
        )
    return table


def margin_table(result: RoundResult, dimension: str, *, lang: str = "nl") -> Table:
    """Sector totals by one dimension, with 95% intervals (visits and revenue; persons cannot
    be summed over cells)."""
    dim = DIMENSIONS[dimension]
    label = dim.nl if lang == "nl" else dim.en
    table = Table(title=("Sectortotaal per " if lang == "nl" else "Sector total by ") + label)
    table.add_column(label)
    shown = [m for m in result.measures if m.measure is not Measure.PERSONS]
    columns = []
    for estimate in shown:
        table.add_column(MEASURE_LABELS[estimate.measure.value][lang] + " (95%)", justify="right")
        columns.append(margin(result.spec, estimate, dimension))
    if not columns:
        return table
    domain = columns[0][0]
    for i, value in enumerate(domain):
        table.add_row(
            dim.label(value, lang),
            *(
                interval(m.estimates[i], m.lower[i], m.upper[i], money=m.measure is Measure.REVENUE)
                for _, m in columns
            ),
        )
    return table


def ratio_margin_table(result: RoundResult, dimension: str, *, lang: str = "nl") -> Table:
    """Mean ticket price by one dimension: total revenue over total visits, delta method."""
    dim = DIMENSIONS[dimension]
    label = dim.nl if lang == "nl" else dim.en
    table = Table(title=MEASURE_LABELS["mean_price"][lang].split(" (")[0].capitalize())
    table.add_column(label)
    table.add_column(MEASURE_LABELS["mean_price"][lang] + " (95%)", justify="right")
    measures = {m.measure: m for m in result.measures}
    if Measure.REVENUE not in measures or Measure.VISITS not in measures:
        return table
    domain, revenue = margin(result.spec, measures[Measure.REVENUE], dimension)
    _, visits = margin(result.spec, measures[Measure.VISITS], dimension)
    for i, value in enumerate(domain):
        estimate = ratio(
            revenue.estimates[i],
            revenue.standard_errors[i] ** 2,
            visits.estimates[i],
            visits.standard_errors[i] ** 2,
        )
        if estimate is None:
            text = "–"
        else:
            r, se = estimate
            text = f"{r / 100:,.2f} ({(r - Z95 * se) / 100:,.2f} – {(r + Z95 * se) / 100:,.2f})"
        table.add_row(dim.label(value, lang), text)
    return table
