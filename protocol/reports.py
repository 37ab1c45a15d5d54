"""The sector's standard question set (design §6) as named report templates.

A template turns a few parameters (a year or a period, the privacy cost, sometimes a list of codes)
into a QuerySpec. Nodes and the aggregator ship the same templates, so "the standard report for
2025" means the same query everywhere.

A template's title is the title of the sector figures it produces. Persons are counted by each
institution and summed over the institutions, so a title never calls them reach or unique
persons (see :mod:`protocol.figures`). The name ``reach_age`` is a stable code, kept for the
clients that use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from protocol.query import Bounds, Measure, Mechanism, Mode, Period, Privacy, QuerySpec


@dataclass(frozen=True)
class ReportTemplate:
    name: str
    title_nl: str
    title_en: str
    group_by: tuple[str, ...]
    measures: tuple[Measure, ...]
    bounds: Bounds = field(default_factory=Bounds)
    needs_domain: str | None = None  # a coded dimension whose codes the caller must list

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": {"nl": self.title_nl, "en": self.title_en},
            "group_by": list(self.group_by),
            "measures": [m.value for m in self.measures],
            "bounds": self.bounds.model_dump(),
            "needs_domain": self.needs_domain,
        }

    def build(
        self,
        *,
        period: Period,
        rho: float | None = None,
        epsilon: float | None = None,
        codes: tuple[str, ...] | None = None,
        query_id: str | None = None,
        mode: Mode | None = None,
    ) -> QuerySpec:
        """The report as a query. Secure mode is the default under a ρ budget; a pure-ε
        (Laplace) budget can only be answered in independent mode."""
        if rho is not None and epsilon is not None:
            raise ValueError("give rho or epsilon, not both")
        privacy = (
            Privacy(mechanism=Mechanism.LAPLACE, epsilon=epsilon)
            if epsilon is not None
            else Privacy(rho=rho if rho is not None else 0.1)
        )
        domains: dict[str, tuple[str, ...]] = {}
        if self.needs_domain is not None:
            if not codes:
                raise ValueError(
                    f"report {self.name!r} needs the {self.needs_domain} codes to report on"
                )
            domains[self.needs_domain] = codes
        if mode is None:
            mode = Mode.INDEPENDENT if epsilon is not None else Mode.SECURE
        if mode is Mode.SECURE and epsilon is not None:
            raise ValueError("secure mode needs a rho (zCDP) budget, not epsilon")
        extra: dict[str, Any] = {} if query_id is None else {"query_id": query_id}
        return QuerySpec(
            title=self.title_en,
            period=period,
            group_by=self.group_by,
            domains=domains,
            measures=self.measures,
            bounds=self.bounds,
            privacy=privacy,
            mode=mode,
            **extra,
        )


def year_period(year: int) -> Period:
    return Period(start=date(year, 1, 1), end=date(year, 12, 31))


_V, _P, _R = Measure.VISITS, Measure.PERSONS, Measure.REVENUE
_REPORT_LIST = (
    ReportTemplate(
        "standard",
        "Bezoeken, bezoekers per instelling (opgeteld, niet ontdubbeld) en omzet per maand, "
        "discipline en leeftijd",
        "Visits, visitors per institution (summed, not deduplicated) and revenue by month, "
        "artform and age band",
        ("month", "artform", "age_band"),
        (_V, _P, _R),
        Bounds(max_visits_per_person=12, max_cells_per_person=12, revenue_max_cents=15_000),
    ),
    ReportTemplate(
        "volume",
        "Bezoek per maand en discipline",
        "Visits by month and artform",
        ("month", "artform"),
        (_V,),
        Bounds(max_visits_per_person=12, max_cells_per_person=12),
    ),
    ReportTemplate(
        "reach_age",
        "Bezoekers per instelling, opgeteld (niet ontdubbeld), naar leeftijdsgroep",
        "Visitors per institution, summed (not deduplicated), by age band",
        ("age_band",),
        (_P,),
        Bounds(max_visits_per_person=12, max_cells_per_person=2),
    ),
    ReportTemplate(
        "first_time",
        "Nieuwe en terugkerende bezoekers",
        "First-time and returning visitors",
        ("first_visit",),
        (_P, _V),
        Bounds(max_visits_per_person=12, max_cells_per_person=2),
    ),
    ReportTemplate(
        "frequency",
        "Verdeling van bezoekfrequentie",
        "Visit frequency distribution",
        ("visit_frequency",),
        (_P,),
        Bounds(max_visits_per_person=12, max_cells_per_person=1),
    ),
    ReportTemplate(
        "origin_province",
        "Herkomst per provincie",
        "Origin by province",
        ("province",),
        (_P, _V),
        Bounds(max_visits_per_person=12, max_cells_per_person=1),
    ),
    ReportTemplate(
        "origin_municipality",
        "Herkomst per gemeente",
        "Origin by municipality",
        ("municipality",),
        (_P, _V),
        Bounds(max_visits_per_person=12, max_cells_per_person=1),
        needs_domain="municipality",
    ),
    ReportTemplate(
        "origin_pc4",
        "Herkomst per postcodegebied",
        "Origin by PC4 area",
        ("pc4",),
        (_P, _V),
        Bounds(max_visits_per_person=12, max_cells_per_person=1),
        needs_domain="pc4",
    ),
    ReportTemplate(
        "segment_profile",
        "Profiel naar doelgroepsegment",
        "Audience segment profile",
        ("segment",),
        (_P,),
        Bounds(max_visits_per_person=12, max_cells_per_person=1),
    ),
    ReportTemplate(
        "price_channel",
        "Bezoek per prijssoort en verkoopkanaal",
        "Visits by price type and channel",
        ("price_type", "channel"),
        (_V,),
        Bounds(max_visits_per_person=12, max_cells_per_person=6),
    ),
    ReportTemplate(
        "revenue",
        "Omzet en gemiddelde prijs per discipline",
        "Revenue and mean price by artform",
        ("artform",),
        (_R, _V),
        Bounds(max_visits_per_person=12, max_cells_per_person=4, revenue_max_cents=15_000),
    ),
    ReportTemplate(
        "lead_time",
        "Boekingstermijn",
        "Booking lead time",
        ("lead_time",),
        (_V,),
        Bounds(max_visits_per_person=12, max_cells_per_person=5),
    ),
)

REPORTS: Mapping[str, ReportTemplate] = {r.name: r for r in _REPORT_LIST}


def report(name: str) -> ReportTemplate:
    try:
        return REPORTS[name]
    except KeyError:
        raise ValueError(
            f"unknown report {name!r}; the standard reports are: {', '.join(REPORTS)}"
        ) from None
