"""Catalogue v1: the public, versioned list of dimensions and their domains.

Every node and the aggregator ship the identical catalogue. Group keys come only from here (or from
explicit values a query lists for a coded dimension), never from the data, so releasing the set of
keys costs no privacy budget.

Three kinds of dimension:

* ``enumerated``: a fixed list of codes with Dutch and English labels (artform, age band, …).
* ``temporal``: month, quarter and year; the domain is every period that overlaps the query period.
* ``coded``: codes that follow a pattern (PC4 area, CBS municipality code). The catalogue cannot
  list them all, so a query that groups by such a dimension lists the codes it wants in
  ``domains``.

Every dimension has the explicit value ``unknown`` so that missing data is counted, not dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

CATALOGUE_VERSION = "1"
UNKNOWN = "unknown"


class DimensionKind(StrEnum):
    ENUMERATED = "enumerated"
    TEMPORAL = "temporal"
    CODED = "coded"


@dataclass(frozen=True, slots=True)
class Value:
    code: str
    nl: str
    en: str


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    nl: str
    en: str
    kind: DimensionKind
    values: tuple[Value, ...] = ()
    pattern: str | None = None
    description: str = ""
    _codes: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_codes", frozenset(v.code for v in self.values))

    def label(self, code: str, lang: str = "nl") -> str:
        for value in self.values:
            if value.code == code:
                return value.nl if lang == "nl" else value.en
        if code == UNKNOWN:
            return "onbekend" if lang == "nl" else "unknown"
        return code

    def is_valid(self, code: str) -> bool:
        """Whether ``code`` belongs to this dimension's domain (temporal codes: by syntax)."""
        if code == UNKNOWN:
            return True
        if self.kind is DimensionKind.ENUMERATED:
            return code in self._codes
        if self.pattern is None:  # pragma: no cover - every non-enumerated dimension has one
            return False
        return re.fullmatch(self.pattern, code) is not None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.values)


def _values(*rows: tuple[str, str, str]) -> tuple[Value, ...]:
    values = tuple(Value(code, nl, en) for code, nl, en in rows)
    return (*values, Value(UNKNOWN, "onbekend", "unknown"))


ARTFORMS = _values(
    ("theatre", "toneel", "theatre"),
    ("musical_opera", "muziektheater, opera en musical", "music theatre, opera and musical"),
    ("dance", "dans", "dance"),
    ("classical_music", "klassieke muziek", "classical music"),
    ("popular_music", "pop, jazz en wereldmuziek", "pop, jazz and world music"),
    ("cabaret", "cabaret en comedy", "cabaret and comedy"),
    ("youth", "jeugd en familie", "youth and family"),
    ("film", "film", "film"),
    ("visual_arts", "beeldende kunst en design", "visual arts and design"),
    ("heritage", "erfgoed en geschiedenis", "heritage and history"),
    ("science_nature", "wetenschap en natuur", "science and nature"),
    ("literature", "literatuur en lezingen", "literature and talks"),
    ("multidisciplinary", "multidisciplinair en festival", "multidisciplinary and festival"),
    ("other", "overig", "other"),
)

AGE_BANDS = _values(
    ("lt18", "jonger dan 18", "under 18"),
    ("18_29", "18 tot en met 29", "18 to 29"),
    ("30_44", "30 tot en met 44", "30 to 44"),
    ("45_64", "45 tot en met 64", "45 to 64"),
    ("65plus", "65 en ouder", "65 and over"),
)

# ISO 3166-2:NL codes; the mapping table may also use CBS "PV" codes, see PROVINCE_FROM_CBS.
PROVINCES = _values(
    ("NL-GR", "Groningen", "Groningen"),
    ("NL-FR", "Fryslân", "Friesland"),
    ("NL-DR", "Drenthe", "Drenthe"),
    ("NL-OV", "Overijssel", "Overijssel"),
    ("NL-FL", "Flevoland", "Flevoland"),
    ("NL-GE", "Gelderland", "Gelderland"),
    ("NL-UT", "Utrecht", "Utrecht"),
    ("NL-NH", "Noord-Holland", "North Holland"),
    ("NL-ZH", "Zuid-Holland", "South Holland"),
    ("NL-ZE", "Zeeland", "Zeeland"),
    ("NL-NB", "Noord-Brabant", "North Brabant"),
    ("NL-LI", "Limburg", "Limburg"),
    ("abroad", "buitenland", "abroad"),
)

PROVINCE_FROM_CBS: Mapping[str, str] = {
    "PV20": "NL-GR",
    "PV21": "NL-FR",
    "PV22": "NL-DR",
    "PV23": "NL-OV",
    "PV24": "NL-FL",
    "PV25": "NL-GE",
    "PV26": "NL-UT",
    "PV27": "NL-NH",
    "PV28": "NL-ZH",
    "PV29": "NL-ZE",
    "PV30": "NL-NB",
    "PV31": "NL-LI",
}

# The Culturele Doelgroepenmodel is licensed; the catalogue carries its segment numbers, and an
# institution that holds a licence maps its segment names to these numbers in its import profile.
SEGMENTS = _values(
    *((f"cdm_{i:02d}", f"CDM-segment {i}", f"CDM segment {i}") for i in range(1, 12)),
)

PRICE_TYPES = _values(
    ("regular", "regulier", "regular"),
    ("reduced", "korting", "reduced"),
    ("youth_cjp", "CJP / jongeren", "CJP / youth"),
    ("museumkaart", "Museumkaart", "Museumkaart"),
    ("cineville", "Cineville", "Cineville"),
    ("uitpas_kansen", "UiTPAS-kansentarief", "UiTPAS reduced rate"),
    ("member_subscription", "lid of abonnement", "member or subscription"),
    ("group_school", "groep of school", "group or school"),
    ("complimentary", "vrijkaart", "complimentary"),
    ("other", "overig", "other"),
)

CHANNELS = _values(
    ("online", "online", "online"),
    ("box_office", "kassa", "box office"),
    ("phone", "telefoon", "phone"),
    ("reseller", "wederverkoper", "reseller"),
    ("pass_app", "pas-app", "pass app"),
)

LEAD_TIME_BANDS = _values(
    ("same_day", "op de dag zelf", "same day"),
    ("1_6", "1 tot 6 dagen vooraf", "1 to 6 days ahead"),
    ("7_29", "7 tot 29 dagen vooraf", "7 to 29 days ahead"),
    ("30_89", "30 tot 89 dagen vooraf", "30 to 89 days ahead"),
    ("90plus", "90 dagen of meer vooraf", "90 days or more ahead"),
)

FIRST_VISIT = _values(
    ("yes", "eerste bezoek", "first visit"),
    ("no", "terugkerend", "returning"),
)

VISIT_FREQUENCY = _values(
    ("1", "1 bezoek", "1 visit"),
    ("2", "2 bezoeken", "2 visits"),
    ("3_5", "3 tot 5 bezoeken", "3 to 5 visits"),
    ("6_9", "6 tot 9 bezoeken", "6 to 9 visits"),
    ("10plus", "10 of meer bezoeken", "10 or more visits"),
)

WEEKDAYS = _values(
    ("mon", "maandag", "Monday"),
    ("tue", "dinsdag", "Tuesday"),
    ("wed", "woensdag", "Wednesday"),
    ("thu", "donderdag", "Thursday"),
    ("fri", "vrijdag", "Friday"),
    ("sat", "zaterdag", "Saturday"),
    ("sun", "zondag", "Sunday"),
)

_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        "month",
        "maand",
        "month",
        DimensionKind.TEMPORAL,
        pattern=r"\d{4}-(0[1-9]|1[0-2])",
        description="Month of the event, YYYY-MM.",
    ),
    Dimension(
        "quarter",
        "kwartaal",
        "quarter",
        DimensionKind.TEMPORAL,
        pattern=r"\d{4}-Q[1-4]",
        description="Quarter of the event, YYYY-Qn.",
    ),
    Dimension(
        "year",
        "jaar",
        "year",
        DimensionKind.TEMPORAL,
        pattern=r"\d{4}",
        description="Calendar year of the event.",
    ),
    Dimension(
        "weekday",
        "weekdag",
        "weekday",
        DimensionKind.ENUMERATED,
        WEEKDAYS,
        description="Day of the week of the event.",
    ),
    Dimension(
        "artform",
        "discipline",
        "artform",
        DimensionKind.ENUMERATED,
        ARTFORMS,
        description="Sector artform taxonomy of the event.",
    ),
    Dimension(
        "age_band",
        "leeftijdsgroep",
        "age band",
        DimensionKind.ENUMERATED,
        AGE_BANDS,
        description="Age of the visitor on the day of the event.",
    ),
    Dimension(
        "pc4",
        "postcodegebied (PC4)",
        "postcode area (PC4)",
        DimensionKind.CODED,
        pattern=r"[1-9]\d{3}",
        description="Four-digit Dutch postcode area of the visitor.",
    ),
    Dimension(
        "municipality",
        "gemeente",
        "municipality",
        DimensionKind.CODED,
        pattern=r"GM\d{4}",
        description="CBS municipality code of the visitor, via the PC4 mapping table.",
    ),
    Dimension(
        "province",
        "provincie",
        "province",
        DimensionKind.ENUMERATED,
        PROVINCES,
        description="Province of the visitor, via the PC4 mapping table.",
    ),
    Dimension(
        "segment",
        "segment",
        "segment",
        DimensionKind.ENUMERATED,
        SEGMENTS,
        description="Culturele Doelgroepenmodel segment, where the institution has one.",
    ),
    Dimension(
        "price_type",
        "prijssoort",
        "price type",
        DimensionKind.ENUMERATED,
        PRICE_TYPES,
        description="Price type or discount of the ticket.",
    ),
    Dimension(
        "channel",
        "verkoopkanaal",
        "sales channel",
        DimensionKind.ENUMERATED,
        CHANNELS,
        description="Channel through which the ticket was sold.",
    ),
    Dimension(
        "lead_time",
        "boekingstermijn",
        "booking lead time",
        DimensionKind.ENUMERATED,
        LEAD_TIME_BANDS,
        description="Days between order and event.",
    ),
    Dimension(
        "first_visit",
        "eerste bezoek",
        "first visit",
        DimensionKind.ENUMERATED,
        FIRST_VISIT,
        description="Whether this visit is the person's first known visit to the institution.",
    ),
    Dimension(
        "visit_frequency",
        "bezoekfrequentie",
        "visit frequency",
        DimensionKind.ENUMERATED,
        VISIT_FREQUENCY,
        description="Number of the person's visits within the query period and filters.",
    ),
)

DIMENSIONS: Mapping[str, Dimension] = {d.name: d for d in _DIMENSIONS}


class CatalogueError(ValueError):
    """A dimension or value is not in the catalogue."""


def dimension(name: str) -> Dimension:
    try:
        return DIMENSIONS[name]
    except KeyError:
        known = ", ".join(DIMENSIONS)
        raise CatalogueError(
            f"unknown dimension {name!r}; catalogue v{CATALOGUE_VERSION} has: {known}"
        ) from None


def check_value(dim_name: str, code: str) -> None:
    dim = dimension(dim_name)
    if not dim.is_valid(code):
        if dim.kind is DimensionKind.ENUMERATED:
            allowed = ", ".join(dim.codes)
            raise CatalogueError(f"unknown value {code!r} for {dim_name!r}; allowed: {allowed}")
        raise CatalogueError(
            f"value {code!r} for {dim_name!r} does not match the code pattern {dim.pattern}"
        )


def months_between(start: date, end: date) -> Iterator[tuple[int, int]]:
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        yield year, month
        month += 1
        if month == 13:
            year, month = year + 1, 1


def temporal_domain(name: str, start: date, end: date) -> tuple[str, ...]:
    """Codes of a temporal dimension for every period that overlaps [start, end], in order."""
    months = list(months_between(start, end))
    if name == "month":
        codes = [f"{y:04d}-{m:02d}" for y, m in months]
    elif name == "quarter":
        codes = list(dict.fromkeys(f"{y:04d}-Q{(m + 2) // 3}" for y, m in months))
    elif name == "year":
        codes = list(dict.fromkeys(f"{y:04d}" for y, _ in months))
    else:
        raise CatalogueError(f"{name!r} is not a temporal dimension")
    return (*codes, UNKNOWN)


def age_band(age_years: int | None) -> str:
    if age_years is None or age_years < 0 or age_years > 120:
        return UNKNOWN
    if age_years < 18:
        return "lt18"
    if age_years < 30:
        return "18_29"
    if age_years < 45:
        return "30_44"
    if age_years < 65:
        return "45_64"
    return "65plus"


def lead_time_band(days: int | None) -> str:
    if days is None or days < 0:
        return UNKNOWN
    if days == 0:
        return "same_day"
    if days < 7:
        return "1_6"
    if days < 30:
        return "7_29"
    if days < 90:
        return "30_89"
    return "90plus"


WEEKDAY_CODES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Visit-frequency bands as (lowest count, code), highest first; used by the node's SQL compiler.
FREQUENCY_BANDS: tuple[tuple[int, str], ...] = (
    (10, "10plus"),
    (6, "6_9"),
    (3, "3_5"),
    (2, "2"),
    (1, "1"),
)


def as_dict() -> dict[str, object]:
    """The catalogue as a JSON-ready document (served by nodes and the aggregator)."""
    return {
        "version": CATALOGUE_VERSION,
        "unknown": UNKNOWN,
        "dimensions": [
            {
                "name": d.name,
                "label": {"nl": d.nl, "en": d.en},
                "kind": d.kind.value,
                "description": d.description,
                "pattern": d.pattern,
                "values": [{"code": v.code, "label": {"nl": v.nl, "en": v.en}} for v in d.values],
            }
            for d in _DIMENSIONS
        ],
        "geography_table": {
            "description": (
                "Operators load the CBS PC4 to municipality table themselves with "
                "'publieksdata node geo load FILE'. Columns: pc4; municipality_code (GMxxxx); "
                "province (ISO 3166-2:NL such as NL-UT, or a CBS code such as PV26)."
            ),
            "columns": ["pc4", "municipality_code", "province"],
        },
    }
