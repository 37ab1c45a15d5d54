"""Catalogue v1: domains, labels, temporal domains, banding functions and error messages."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from protocol.canonical import canonical_bytes
from protocol.catalogue import (
    CATALOGUE_VERSION,
    DIMENSIONS,
    FREQUENCY_BANDS,
    PROVINCE_FROM_CBS,
    UNKNOWN,
    WEEKDAY_CODES,
    CatalogueError,
    DimensionKind,
    age_band,
    as_dict,
    check_value,
    dimension,
    lead_time_band,
    temporal_domain,
)

# Design §5 names these dimensions; the catalogue must carry exactly them.
DESIGN_DIMENSIONS = {
    "month",
    "quarter",
    "year",
    "weekday",
    "artform",
    "age_band",
    "pc4",
    "municipality",
    "province",
    "segment",
    "price_type",
    "channel",
    "lead_time",
    "first_visit",
    "visit_frequency",
}
ENUMERATED = [d for d in DIMENSIONS.values() if d.kind is DimensionKind.ENUMERATED]


def test_catalogue_has_the_dimensions_of_the_design() -> None:
    assert set(DIMENSIONS) == DESIGN_DIMENSIONS
    names = [d["name"] for d in as_dict()["dimensions"]]
    assert len(names) == len(set(names)) == len(DESIGN_DIMENSIONS)


@pytest.mark.parametrize("dim", ENUMERATED, ids=lambda d: d.name)
def test_enumerated_dimension_lists_unknown_last(dim) -> None:
    assert dim.codes[-1] == UNKNOWN
    assert dim.codes.count(UNKNOWN) == 1


@pytest.mark.parametrize("dim", list(DIMENSIONS.values()), ids=lambda d: d.name)
def test_every_dimension_accepts_unknown(dim) -> None:
    assert dim.is_valid(UNKNOWN)
    check_value(dim.name, UNKNOWN)  # does not raise
    assert dim.label(UNKNOWN, "nl") == "onbekend"
    assert dim.label(UNKNOWN, "en") == "unknown"


@pytest.mark.parametrize("dim", ENUMERATED, ids=lambda d: d.name)
def test_enumerated_codes_unique_and_labelled(dim) -> None:
    assert len(dim.codes) == len(set(dim.codes))
    for value in dim.values:
        assert value.code.strip() == value.code and value.code
        assert value.nl.strip(), f"{dim.name}.{value.code} has no Dutch label"
        assert value.en.strip(), f"{dim.name}.{value.code} has no English label"
        assert dim.label(value.code, "nl") == value.nl
        assert dim.label(value.code, "en") == value.en
        assert dim.is_valid(value.code)


@pytest.mark.parametrize("dim", list(DIMENSIONS.values()), ids=lambda d: d.name)
def test_dimension_labels_non_empty(dim) -> None:
    assert dim.nl.strip() and dim.en.strip() and dim.description.strip()
    if dim.kind is not DimensionKind.ENUMERATED:
        assert dim.pattern is not None and not dim.values


def test_price_types_cover_the_design_list() -> None:
    codes = set(DIMENSIONS["price_type"].codes)
    for wanted in (
        "regular",
        "reduced",
        "youth_cjp",
        "museumkaart",
        "cineville",
        "uitpas_kansen",
        "member_subscription",
        "group_school",
        "complimentary",
        "other",
        UNKNOWN,
    ):
        assert wanted in codes


def test_segments_are_the_eleven_cdm_segments_plus_unknown() -> None:
    assert DIMENSIONS["segment"].codes == (*(f"cdm_{i:02d}" for i in range(1, 12)), UNKNOWN)


def test_label_of_unlisted_code_is_the_code() -> None:
    assert DIMENSIONS["pc4"].label("3511") == "3511"
    assert DIMENSIONS["artform"].label("theatre", "nl") == "toneel"
    assert DIMENSIONS["artform"].label("theatre", "en") == "theatre"


def test_weekday_codes_follow_python_weekday_order() -> None:
    assert DIMENSIONS["weekday"].codes[:-1] == WEEKDAY_CODES
    assert WEEKDAY_CODES[date(2024, 1, 1).weekday()] == "mon"  # 1 January 2024 was a Monday
    assert WEEKDAY_CODES[date(2024, 12, 29).weekday()] == "sun"


def test_province_mapping_targets_catalogue_codes() -> None:
    provinces = DIMENSIONS["province"]
    assert len(PROVINCE_FROM_CBS) == 12
    assert len(set(PROVINCE_FROM_CBS.values())) == 12
    for iso in PROVINCE_FROM_CBS.values():
        assert provinces.is_valid(iso)


def test_frequency_bands_match_the_dimension() -> None:
    lows = [low for low, _ in FREQUENCY_BANDS]
    assert lows == sorted(lows, reverse=True) and lows[-1] == 1
    codes = {code for _, code in FREQUENCY_BANDS}
    assert codes == set(DIMENSIONS["visit_frequency"].codes) - {UNKNOWN}


# -- temporal domains ---------------------------------------------------------------------


def test_month_domain_across_year_boundary() -> None:
    assert temporal_domain("month", date(2023, 11, 15), date(2024, 2, 3)) == (
        "2023-11",
        "2023-12",
        "2024-01",
        "2024-02",
        UNKNOWN,
    )


def test_quarter_domain_across_year_boundary() -> None:
    assert temporal_domain("quarter", date(2023, 12, 31), date(2024, 1, 1)) == (
        "2023-Q4",
        "2024-Q1",
        UNKNOWN,
    )
    assert temporal_domain("quarter", date(2024, 3, 31), date(2024, 10, 1)) == (
        "2024-Q1",
        "2024-Q2",
        "2024-Q3",
        "2024-Q4",
        UNKNOWN,
    )


def test_year_domain_across_year_boundaries() -> None:
    assert temporal_domain("year", date(2023, 6, 1), date(2025, 1, 1)) == (
        "2023",
        "2024",
        "2025",
        UNKNOWN,
    )


def test_single_day_period() -> None:
    day = date(2024, 2, 29)
    assert temporal_domain("month", day, day) == ("2024-02", UNKNOWN)
    assert temporal_domain("quarter", day, day) == ("2024-Q1", UNKNOWN)
    assert temporal_domain("year", day, day) == ("2024", UNKNOWN)


def test_full_year_has_twelve_months_and_four_quarters() -> None:
    start, end = date(2025, 1, 1), date(2025, 12, 31)
    months = temporal_domain("month", start, end)
    assert len(months) == 13 and months[0] == "2025-01" and months[-2] == "2025-12"
    assert temporal_domain("quarter", start, end)[:-1] == tuple(f"2025-Q{q}" for q in (1, 2, 3, 4))


def test_temporal_codes_match_their_pattern() -> None:
    start, end = date(2019, 11, 30), date(2021, 2, 1)
    for name in ("month", "quarter", "year"):
        for code in temporal_domain(name, start, end):
            check_value(name, code)


def test_temporal_domain_of_non_temporal_dimension() -> None:
    with pytest.raises(CatalogueError, match="not a temporal dimension"):
        temporal_domain("artform", date(2024, 1, 1), date(2024, 1, 2))


# -- banding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (None, UNKNOWN),
        (-1, UNKNOWN),
        (0, "lt18"),
        (17, "lt18"),
        (18, "18_29"),
        (29, "18_29"),
        (30, "30_44"),
        (44, "30_44"),
        (45, "45_64"),
        (64, "45_64"),
        (65, "65plus"),
        (120, "65plus"),
        (121, UNKNOWN),
    ],
)
def test_age_band_boundaries(age, band) -> None:
    assert age_band(age) == band
    check_value("age_band", band)


@pytest.mark.parametrize(
    ("days", "band"),
    [
        (None, UNKNOWN),
        (-1, UNKNOWN),
        (0, "same_day"),
        (1, "1_6"),
        (6, "1_6"),
        (7, "7_29"),
        (29, "7_29"),
        (30, "30_89"),
        (89, "30_89"),
        (90, "90plus"),
        (4000, "90plus"),
    ],
)
def test_lead_time_band_boundaries(days, band) -> None:
    assert lead_time_band(days) == band
    check_value("lead_time", band)


def test_age_bands_labels_agree_with_age_band_function() -> None:
    # The Dutch labels state inclusive ranges; the function must agree at both ends.
    assert age_band(29) == "18_29" and "29" in DIMENSIONS["age_band"].label("18_29")
    assert age_band(44) == "30_44" and "44" in DIMENSIONS["age_band"].label("30_44")


# -- errors -------------------------------------------------------------------------------


def test_unknown_dimension_lists_known_ones() -> None:
    with pytest.raises(CatalogueError) as info:
        dimension("genre")
    message = str(info.value)
    assert "'genre'" in message
    for name in DESIGN_DIMENSIONS:
        assert name in message
    assert f"v{CATALOGUE_VERSION}" in message


def test_unknown_enumerated_value_names_allowed_values() -> None:
    with pytest.raises(CatalogueError) as info:
        check_value("channel", "telephone")
    message = str(info.value)
    assert "'telephone'" in message and "'channel'" in message
    for code in DIMENSIONS["channel"].codes:
        assert code in message


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("pc4", "0123"),
        ("pc4", "123"),
        ("pc4", "12345"),
        ("pc4", "35 11"),
        ("municipality", "0363"),
        ("municipality", "GM363"),
        ("month", "2024-13"),
        ("month", "2024-1"),
        ("quarter", "2024-Q5"),
        ("year", "24"),
    ],
)
def test_pattern_mismatch_names_the_pattern(name, code) -> None:
    with pytest.raises(CatalogueError) as info:
        check_value(name, code)
    assert repr(code) in str(info.value)
    assert f"pattern {DIMENSIONS[name].pattern}" in str(info.value)


@pytest.mark.parametrize(
    ("name", "code"),
    [("pc4", "1000"), ("pc4", "9999"), ("municipality", "GM0363"), ("quarter", "2024-Q4")],
)
def test_valid_coded_values(name, code) -> None:
    check_value(name, code)


def test_catalogue_document_is_json_and_canonical() -> None:
    doc = as_dict()
    assert doc["version"] == CATALOGUE_VERSION and doc["unknown"] == UNKNOWN
    assert json.loads(canonical_bytes(doc)) == doc
    artform = next(d for d in doc["dimensions"] if d["name"] == "artform")
    assert [v["code"] for v in artform["values"]] == list(DIMENSIONS["artform"].codes)


def test_months_between_handles_december() -> None:
    start = date(2023, 12, 1)
    assert temporal_domain("month", start, start + timedelta(days=31)) == (
        "2023-12",
        "2024-01",
        UNKNOWN,
    )
