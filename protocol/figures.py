"""What a sector figure is: how it combines the institutions' figures, and what it is called.

Every round today merges the institutions' figures by **summing** them. For visits and revenue
that is exact. For ``persons`` it is not a count of different people in the sector: each node
keys its pseudonyms with its own secret, so nobody can tell that the visitor of a theatre and the
visitor of a museum are the same person, and someone who visits three institutions is counted
three times. A node's own ``persons`` figure *is* deduplicated (within that institution); the
sector figure is a sum of such counts, not deduplicated. Deduplicated reach across the sector
needs a sector-wide pseudonym and a different protocol (design §12); it is not available yet.

So the machine-readable measure code stays ``persons``, and every sector figure of it carries
``aggregation = "sum_over_institutions"`` and ``deduplicated = false`` and is labelled
"bezoekers per instelling, opgeteld (niet ontdubbeld)" / "visitors per institution, summed (not
deduplicated)", never reach or unique persons. The labels live here so that the CLI, the Python
client, release pages, CSV and the node's admin pages say the same thing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, model_validator

from protocol.query import Measure


class Aggregation(StrEnum):
    """How a sector figure combines the institutions' figures."""

    SUM_OVER_INSTITUTIONS = "sum_over_institutions"


def deduplicated(measure: Measure | str, aggregation: Aggregation | str) -> bool | None:
    """Whether a figure of ``measure`` counts each person once across the sector: False for
    ``persons`` summed over institutions; None for measures with nothing to deduplicate
    (visits, revenue)."""
    if Measure(measure) is not Measure.PERSONS:
        return None
    return Aggregation(aggregation) is not Aggregation.SUM_OVER_INSTITUTIONS


def fill_deduplicated(data: Any, measure_key: str = "measure") -> Any:
    """For a model's ``mode="before"`` validator: fill in ``aggregation`` and ``deduplicated``
    when a document or answer made before they existed lacks them (every sector figure then was
    a sum over institutions), and refuse a ``deduplicated`` that contradicts the aggregation."""
    if not isinstance(data, dict) or measure_key not in data:
        return data
    try:
        measure = Measure(data[measure_key])
    except ValueError:
        return data  # not a base measure (e.g. a mean): nothing to say about persons
    data = dict(data)
    aggregation = data.setdefault("aggregation", Aggregation.SUM_OVER_INSTITUTIONS.value)
    try:
        expected = deduplicated(measure, aggregation)
    except ValueError:
        return data  # an unknown aggregation: the field's own validation names it
    given = data.setdefault("deduplicated", expected)
    if given is not expected:
        raise ValueError(
            f"a {measure.value} figure aggregated as {aggregation} has deduplicated = "
            f"{'null' if expected is None else str(expected).lower()}"
        )
    return data


class FillsDeduplicated(BaseModel):
    """Mixed into a model with ``aggregation`` and ``deduplicated`` fields (a round's
    ``MeasureEstimate``, a release's ``Table``): fills them in for documents made before they
    existed, and refuses a contradiction (:func:`fill_deduplicated`)."""

    @model_validator(mode="before")
    @classmethod
    def _deduplicated(cls, data: object) -> object:
        return fill_deduplicated(data)


# Sector figures: one label per measure (lower case, for columns and units).
_SECTOR = {
    Measure.VISITS: ("bezoeken", "visits"),
    Measure.PERSONS: (
        "bezoekers per instelling, opgeteld (niet ontdubbeld)",
        "visitors per institution, summed (not deduplicated)",
    ),
    Measure.REVENUE: ("omzet", "revenue"),
}
# One institution's own figure: its distinct persons are deduplicated within it.
_INSTITUTION = {
    Measure.VISITS: ("bezoeken", "visits"),
    Measure.PERSONS: (
        "unieke bezoekers bij deze instelling",
        "unique visitors at this institution",
    ),
    Measure.REVENUE: ("omzet", "revenue"),
}

NOT_DEDUPLICATED_NOTE = (
    "Bezoekers per instelling, opgeteld (niet ontdubbeld): wie drie instellingen bezocht, telt "
    "hier drie keer mee.",
    "Visitors per institution, summed (not deduplicated): someone who visited three "
    "institutions counts three times here.",
)

METHOD_NOTE = (
    "Elke instelling telt haar eigen bezoekers: wie vaker bij dezelfde instelling kwam, telt daar "
    "één keer. Instellingen kunnen hun bezoekers niet met elkaar vergelijken (elke instelling "
    "vervangt klantgegevens door een code met een eigen geheime sleutel), dus niemand kan zien wie "
    "bij meer dan één instelling kwam. Een sectorcijfer van bezoekers is daarom de som van de "
    "aantallen per instelling: wie een theater, een museum en een filmhuis bezocht, telt drie "
    "keer mee. Het is dus niet het aantal verschillende mensen dat de sector bereikte; dat aantal "
    "is kleiner of gelijk. Een ontdubbeld bereik over de hele sector is nog niet beschikbaar; "
    "daar wordt aan gewerkt.",
    "Each institution counts its own visitors: someone who came to the same institution several "
    "times counts once there. Institutions cannot match their visitors with each other (each "
    "replaces customer details with a code made with its own secret key), so nobody can see who "
    "visited more than one institution. A sector figure of visitors is therefore the sum of the "
    "institutions' counts: someone who visited a theatre, a museum and a cinema counts three "
    "times. It is not the number of different people the sector reached, which is smaller or "
    "equal. Deduplicated reach across the sector is not available yet; it is being built.",
)


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


def sector_label(measure: Measure | str, lang: str = "nl") -> str:
    """The label of a sector figure of ``measure`` (summed over institutions), in nl or en."""
    return _pick(_SECTOR[Measure(measure)], lang)


def institution_label(measure: Measure | str, lang: str = "nl") -> str:
    """The label of one institution's own figure of ``measure``, in nl or en."""
    return _pick(_INSTITUTION[Measure(measure)], lang)


def not_deduplicated_note(lang: str = "nl") -> str:
    return _pick(NOT_DEDUPLICATED_NOTE, lang)


def method_note(lang: str = "nl") -> str:
    return _pick(METHOD_NOTE, lang)
