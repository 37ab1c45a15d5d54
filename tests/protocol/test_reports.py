"""Report templates: each builds a valid spec; coded origins need their codes."""

from __future__ import annotations

import json
from datetime import date

import pytest

from protocol.catalogue import DIMENSIONS, DimensionKind
from protocol.query import MAX_CELLS, Mechanism, QuerySpec
from protocol.reports import REPORTS, ReportTemplate, report, year_period

CODES = {"pc4": ("3511", "1011", "unknown"), "municipality": ("GM0344", "GM0363")}

# Design §6: the sector's standard question set.
DESIGN_REPORTS = {
    "volume",
    "reach_age",
    "first_time",
    "frequency",
    "origin_pc4",
    "origin_municipality",
    "origin_province",
    "segment_profile",
    "price_channel",
    "revenue",
    "lead_time",
}


def _build(template: ReportTemplate, **kwargs: object) -> QuerySpec:
    codes = CODES.get(template.needs_domain or "")
    return template.build(period=year_period(2025), codes=codes, **kwargs)


def test_the_design_reports_exist() -> None:
    assert set(REPORTS) >= DESIGN_REPORTS


def test_year_period() -> None:
    period = year_period(2024)
    assert (period.start, period.end) == (date(2024, 1, 1), date(2024, 12, 31))


@pytest.mark.parametrize("template", list(REPORTS.values()), ids=lambda t: t.name)
def test_template_builds_valid_spec_with_default_cost(template: ReportTemplate) -> None:
    spec = _build(template)
    assert spec.group_by == template.group_by
    assert spec.measures == template.measures
    assert spec.bounds == template.bounds
    assert spec.privacy.mechanism is Mechanism.GAUSSIAN and spec.privacy.rho == 0.1
    assert spec.title == template.title_en
    assert 1 <= spec.cell_count <= MAX_CELLS
    assert spec.period == year_period(2025)
    # The spec survives the wire unchanged.
    assert QuerySpec.model_validate_json(spec.model_dump_json()).digest() == spec.digest()


@pytest.mark.parametrize("template", list(REPORTS.values()), ids=lambda t: t.name)
def test_template_metadata(template: ReportTemplate) -> None:
    assert template.title_nl.strip() and template.title_en.strip()
    assert template.title_nl != template.title_en
    described = template.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["name"] == template.name
    for name in template.group_by:
        coded = DIMENSIONS[name].kind is DimensionKind.CODED
        assert coded == (template.needs_domain == name)


@pytest.mark.parametrize("name", ["origin_pc4", "origin_municipality"])
def test_coded_origins_require_codes(name: str) -> None:
    template = report(name)
    dim = template.needs_domain
    assert dim is not None
    for codes in (None, ()):
        with pytest.raises(ValueError, match=f"needs the {dim} codes"):
            template.build(period=year_period(2025), codes=codes)
    spec = template.build(period=year_period(2025), codes=CODES[dim])
    assert spec.domain(dim) == CODES[dim]
    assert spec.cell_count == len(CODES[dim])


def test_coded_origin_rejects_malformed_codes() -> None:
    with pytest.raises(ValueError, match="pattern"):
        report("origin_pc4").build(period=year_period(2025), codes=("0123",))


def test_build_with_epsilon_uses_laplace() -> None:
    spec = report("volume").build(period=year_period(2025), epsilon=0.5)
    assert spec.privacy.mechanism is Mechanism.LAPLACE
    assert spec.privacy.epsilon == 0.5 and spec.privacy.rho is None


def test_build_with_rho_and_query_id() -> None:
    spec = report("standard").build(period=year_period(2025), rho=0.02, query_id="std-2025-001")
    assert spec.privacy.rho == 0.02
    assert spec.query_id == "std-2025-001"


def test_each_build_gets_a_fresh_query_id() -> None:
    template = report("volume")
    one = template.build(period=year_period(2025))
    two = template.build(period=year_period(2025))
    assert one.query_id != two.query_id


def test_unknown_report_lists_the_standard_ones() -> None:
    with pytest.raises(ValueError) as info:
        report("nonsense")
    for name in REPORTS:
        assert name in str(info.value)
