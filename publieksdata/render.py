"""Rich tables of a merged round result: coverage, margins, means. Dutch or English labels."""

from __future__ import annotations

from rich.table import Table

from aggregator.client.presentation import Series, present
from aggregator.merge import margin
from protocol.catalogue import DIMENSIONS
from protocol.figures import sector_label
from protocol.publication import SUPPRESS_RELATIVE_HALFWIDTH
from protocol.query import Measure, Mode
from protocol.ratios import MEAN_PRICE, mean_of
from protocol.results import NodeStatus, RoundResult, RoundState

TOO_WIDE_MARK = "*"  # after a figure whose 95% interval is too wide to be useful

MEASURE_LABELS = {
    "visits": {"nl": "bezoeken", "en": "visits"},
    "persons": {"nl": sector_label("persons", "nl"), "en": sector_label("persons", "en")},
    "revenue": {"nl": "omzet (€)", "en": "revenue (€)"},
    "mean_price": {"nl": "gem. prijs (€)", "en": "mean price (€)"},
}
REASONS = {
    "budget_exhausted": (
        "het privacybudget voor deze periode zou opraken",
        "its privacy budget for this period would run out",
    ),
    "analyst_budget_exhausted": (
        "uw deel van het privacybudget zou opraken",
        "your share of its privacy budget would run out",
    ),
    "policy_cost_too_high": (
        "de privacykosten liggen boven de grens per vraag",
        "the privacy cost is above its limit per query",
    ),
    "policy_too_many_cells": (
        "de vraag heeft meer cellen dan toegestaan",
        "the query has more cells than it allows",
    ),
    "policy_dimension_not_allowed": (
        "een van de dimensies is niet toegestaan",
        "it does not allow one of the dimensions",
    ),
    "policy_bounds_not_allowed": (
        "de bijdragegrenzen zijn ruimer dan toegestaan",
        "the contribution bounds are wider than it allows",
    ),
    "policy_mode_not_supported": (
        "deze manier van samenvoegen wordt niet ondersteund",
        "it does not support this aggregation mode",
    ),
    "node_removed": (
        "de instelling is uit de federatie verwijderd",
        "the institution was removed from the federation",
    ),
    "awaiting_approval": (
        "wacht op goedkeuring door de beheerder van de instelling",
        "waiting for approval by the institution's operator",
    ),
    "declined_by_operator": (
        "de beheerder van de instelling heeft de vraag geweigerd",
        "the institution's operator declined the question",
    ),
    "not_delivered": (
        "de node haalde de vraag niet op voor de deadline",
        "it did not collect the question before the deadline",
    ),
    "policy_secure_worst_case_too_high": (
        "bij deze drempel weegt het eigen ruisaandeel te licht (grens in het beleid)",
        "at this threshold its own noise share alone is above its worst-case limit",
    ),
    "secure_protocol_violation": (
        "de node zag een schending van het beveiligde protocol en stopte",
        "it saw a breach of the secure protocol and stopped",
    ),
    "dropped_before_masking": (
        "viel weg voordat de gemaskeerde cijfers werden verstuurd (niet meegeteld)",
        "dropped out before sending its masked figures (not counted)",
    ),
    "dropped_after_sharing": (
        "viel weg na het delen van de sleutels; de maskers zijn hersteld (niet meegeteld)",
        "dropped out after sharing its keys; its masks were recovered (not counted)",
    ),
    "malformed_shares": (
        "stuurde onbruikbare sleuteldelen en is uitgesloten",
        "sent unusable key shares and was left out",
    ),
    "round_failed": (
        "deed mee, maar de ronde haalde de drempel niet; er is niets vrijgegeven",
        "took part, but the round fell below its threshold; nothing was released",
    ),
}
STATUS_LABELS = {
    NodeStatus.ANSWERED: {"nl": "beantwoord", "en": "answered"},
    NodeStatus.REFUSED: {"nl": "geweigerd", "en": "refused"},
    NodeStatus.TIMED_OUT: {"nl": "te laat / onbereikbaar", "en": "timed out"},
    NodeStatus.INVALID: {"nl": "ongeldig antwoord", "en": "invalid answer"},
    NodeStatus.PENDING: {"nl": "wacht nog", "en": "pending"},
}


_DUTCH_SEPARATORS = str.maketrans(",.", ".,")


def number(value: float, fmt: str, lang: str) -> str:
    """``value`` in format ``fmt`` (Python's, e.g. ",.1f"), with Dutch separators for nl:
    1.234,5 rather than 1,234.5 (which a Dutch reader takes for a number near 1)."""
    text = f"{value:{fmt}}"
    return text.translate(_DUTCH_SEPARATORS) if lang == "nl" else text


def shown_interval(
    series: Series, i: int, fmt: str = ",.0f", factor: float = 1, *, lang: str = "en"
) -> str:
    """Cell ``i`` of a shown series (aggregator.client.presentation), times ``factor``: never
    negative, money in euros, and marked with TOO_WIDE_MARK when its interval is too wide to be
    useful; numbers written as ``lang`` writes them."""
    value, lower, upper = series.values[i], series.lower[i], series.upper[i]
    if value is None or lower is None or upper is None:
        return "–"
    low, high = number(lower * factor, fmt, lang), number(upper * factor, fmt, lang)
    text = f"{number(value * factor, fmt, lang)} ({low} – {high})"
    return f"{text} {TOO_WIDE_MARK}" if series.too_wide[i] else text


def too_wide_note(lang: str) -> str:
    """The footnote of TOO_WIDE_MARK, and that negative estimates are shown as 0."""
    limit = f"{SUPPRESS_RELATIVE_HALFWIDTH * 100:g}%"
    if lang == "nl":
        return (
            f"{TOO_WIDE_MARK} Onbetrouwbaar: het 95%-interval is breder dan ±{limit} van de "
            "schatting (of de schatting is 0). De publieke site toont zo'n cijfer als '.'. "
            "Negatieve schattingen (ruis) staan hier als 0."
        )
    return (
        f"{TOO_WIDE_MARK} Unreliable: the 95% interval is wider than ±{limit} of the estimate "
        "(or the estimate is 0). The public site shows such a figure as '.'. Negative "
        "estimates (noise) are shown as 0."
    )


def reason_text(code: str | None, lang: str = "nl") -> str:
    """A reason code with its explanation, e.g. 'budget_exhausted: its privacy budget …'."""
    explained = REASONS.get(code or "")
    if explained is None:
        return code or ""
    return f"{code}: {explained[0] if lang == 'nl' else explained[1]}"


def coverage_table(result: RoundResult, *, lang: str = "nl") -> Table:
    """Which institutions answered, refused (with the reason code), timed out or were invalid."""
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
    colours = {NodeStatus.ANSWERED: "green", NodeStatus.PENDING: "yellow"}
    for node in c.nodes:
        status = f"[{colours.get(node.status, 'red')}]{STATUS_LABELS[node.status][lang]}[/]"
        table.add_row(node.institution, status, reason_text(node.reason, lang))
    if result.mode is Mode.SECURE:
        caption = (
            f"ronde {result.round_id}, beveiligd samengevoegd, drempel {result.threshold}"
            if nl
            else f"round {result.round_id}, secure aggregation, threshold {result.threshold}"
        )
    else:
        caption = (
            f"ronde {result.round_id}, quorum {result.quorum}"
            if nl
            else f"round {result.round_id}, quorum {result.quorum}"
        )
    if result.failure is not None:
        caption += (
            f". Te weinig instellingen bleven tot het eind ({result.failure}): er is niets "
            "vrijgegeven."
            if nl
            else f". Too few institutions stayed to the end ({result.failure}): nothing was "
            "released."
        )
    elif result.state is RoundState.CLOSED and not result.quorum_met:
        caption += (
            ". Quorum niet gehaald: er zijn geen totalen."
            if nl
            else ". Quorum not met: there are no totals."
        )
    elif result.partial:
        caption += (
            ". Gedeeltelijk resultaat: de totalen omvatten alleen de instellingen die antwoordden."
            if nl
            else ". Partial result: the totals cover only the institutions that answered."
        )
    table.caption = caption
    return table


def margin_table(result: RoundResult, dimension: str, *, lang: str = "nl") -> Table:
    """Sector totals by one dimension, with 95% intervals (visits and revenue; persons cannot
    be summed over cells): never negative, revenue in euros, too-wide figures marked."""
    dim = DIMENSIONS[dimension]
    label = dim.nl if lang == "nl" else dim.en
    table = Table(title=("Sectortotaal per " if lang == "nl" else "Sector total by ") + label)
    table.add_column(label)
    shown = [m for m in result.measures if m.measure is not Measure.PERSONS]
    columns: list[Series] = []
    domain: tuple[str, ...] = ()
    for estimate in shown:
        table.add_column(MEASURE_LABELS[estimate.measure.value][lang] + " (95%)", justify="right")
        domain, summed = margin(result.spec, estimate, dimension)
        columns.append(present(summed))
    for i, value in enumerate(domain):
        table.add_row(dim.label(value, lang), *(shown_interval(s, i, lang=lang) for s in columns))
    if any(flag for s in columns for flag in s.too_wide):
        table.caption = too_wide_note(lang)
    return table


def ratio_margin_table(result: RoundResult, dimension: str, *, lang: str = "nl") -> Table:
    """Mean ticket price by one dimension: total revenue over total visits, delta method; never
    negative, in euros, too-wide means marked."""
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
    means = present(mean_of(revenue, visits, MEAN_PRICE))
    for i, value in enumerate(domain):
        table.add_row(dim.label(value, lang), shown_interval(means, i, ",.2f", lang=lang))
    if any(means.too_wide):
        table.caption = too_wide_note(lang)
    return table
