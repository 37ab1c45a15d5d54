"""The query spec: validation messages, immutability, cell order and the canonical digest."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from protocol.catalogue import DIMENSIONS, UNKNOWN
from protocol.query import (
    MAX_CELLS,
    MAX_GROUP_BY,
    MAX_PERIOD_DAYS,
    Bounds,
    Measure,
    Mechanism,
    Period,
    Privacy,
    QuerySpec,
)


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "query_id": "test-query-0001",
        "period": {"start": "2024-01-01", "end": "2024-12-31"},
        "group_by": ["artform"],
        "measures": ["visits"],
        "privacy": {"rho": 0.1},
    }
    doc.update(overrides)
    return doc


def _spec(**overrides: Any) -> QuerySpec:
    return QuerySpec.model_validate(_doc(**overrides))


def _error(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as info:
        _spec(**overrides)
    return str(info.value)


# -- failures and their messages ----------------------------------------------------------


def test_valid_minimal_spec() -> None:
    spec = _spec()
    assert spec.catalogue_version == "1"
    assert spec.privacy.mechanism is Mechanism.GAUSSIAN
    assert spec.bounds == Bounds()


def test_unknown_group_by_dimension_lists_known_ones() -> None:
    message = _error(group_by=["genre"])
    assert "unknown dimension 'genre'" in message
    for name in DIMENSIONS:
        assert name in message


def test_unknown_filter_dimension() -> None:
    message = _error(filters={"genre": ["jazz"]})
    assert "unknown dimension 'genre'" in message and "artform" in message


def test_unknown_value_lists_allowed_values() -> None:
    message = _error(filters={"artform": ["opera"]})
    assert "'opera'" in message and "allowed" in message
    assert "musical_opera" in message and "classical_music" in message


def test_bad_coded_value_names_pattern() -> None:
    message = _error(group_by=["pc4"], domains={"pc4": ["0999"]})
    assert "'0999'" in message and "pattern" in message


def test_empty_value_list() -> None:
    message = _error(filters={"artform": []})
    assert "'artform' is empty" in message and "at least one value" in message


def test_repeated_value() -> None:
    assert "repeats a value" in _error(filters={"artform": ["dance", "dance"]})


def test_filter_that_empties_temporal_group_by_domain() -> None:
    message = _error(group_by=["month"], filters={"month": ["2023-05"]})
    assert "domain of 'month' is empty" in message


def test_filter_that_empties_coded_group_by_domain() -> None:
    message = _error(group_by=["pc4"], domains={"pc4": ["3511"]}, filters={"pc4": ["1011"]})
    assert "domain of 'pc4' is empty" in message


@pytest.mark.parametrize("name", ["pc4", "municipality"])
def test_coded_dimension_needs_domains(name: str) -> None:
    message = _error(group_by=[name])
    assert f"grouping by {name!r} needs its codes listed in domains" in message


def test_domains_for_a_dimension_not_grouped() -> None:
    message = _error(group_by=["artform"], domains={"pc4": ["3511"]})
    assert "domains lists 'pc4', which is not in group_by" in message


def test_too_many_cells_exact_boundary() -> None:
    # pc4 domain of n codes × 12 segment codes: 8333·12 = 99,996 fits, 8334·12 = 100,008 not.
    assert MAX_CELLS == 100_000
    fits = tuple(str(1000 + i) for i in range(8333))
    spec = _spec(group_by=["pc4", "segment"], domains={"pc4": fits})
    assert spec.cell_count == 99_996
    message = _error(group_by=["pc4", "segment"], domains={"pc4": (*fits, "9999")})
    assert "100008 cells" in message and str(MAX_CELLS) in message
    assert "group by fewer dimensions" in message


def test_too_many_cells_from_long_period() -> None:
    # 121 months + unknown, × 15 artforms × 11 price types × 6 channels.
    message = _error(
        period={"start": "2015-01-01", "end": "2024-12-31"},
        group_by=["month", "artform", "price_type", "channel"],
    )
    assert "cells, more than the protocol's limit" in message


def test_too_many_group_by_dimensions() -> None:
    dims = ["artform", "age_band", "channel", "weekday", "first_visit"]
    assert len(dims) == MAX_GROUP_BY + 1
    assert f"at most {MAX_GROUP_BY}" in _error(group_by=dims)


def test_duplicate_group_by() -> None:
    assert "names a dimension twice" in _error(group_by=["artform", "artform"])


def test_inverted_clamp_bounds() -> None:
    message = _error(bounds={"revenue_min_cents": 500, "revenue_max_cents": 100})
    assert "inverted" in message and "swap" in message
    assert "500" in message and "100" in message


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_visits_per_person": 0},
        {"max_visits_per_person": 1001},
        {"max_cells_per_person": 0},
        {"revenue_max_cents": 10_000_001},
        {"revenue_min_cents": -10_000_001},
    ],
)
def test_bounds_out_of_range(bounds: dict[str, int]) -> None:
    (field,) = bounds
    assert field in _error(bounds=bounds)


@pytest.mark.parametrize("cost", [0.0, -0.1, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_rho(cost: float) -> None:
    with pytest.raises(ValidationError, match="positive, finite"):
        Privacy(rho=cost)
    with pytest.raises(ValidationError, match="positive, finite"):
        Privacy(mechanism=Mechanism.LAPLACE, epsilon=cost)


@pytest.mark.parametrize("cost", [10.000001, 1e6])
def test_huge_privacy_cost(cost: float) -> None:
    with pytest.raises(ValidationError, match="implausibly large"):
        Privacy(rho=cost)
    with pytest.raises(ValidationError, match="implausibly large"):
        Privacy(mechanism=Mechanism.LAPLACE, epsilon=cost)
    assert Privacy(rho=10).rho == 10


@pytest.mark.parametrize(
    "privacy", [{"rho": 1e-300}, {"rho": 5e-324}, {"mechanism": "laplace", "epsilon": 1e-12}]
)
def test_a_cost_so_small_that_its_noise_could_not_be_released(privacy: dict[str, Any]) -> None:
    """Such noise would push values beyond ±(2**53 − 1), which no message can carry."""
    assert "limit of 1e+12" in _error(privacy=privacy)


def test_the_widest_noise_allowed_still_fits_the_largest_bounds() -> None:
    revenue = {"measures": ["revenue"], "bounds": {"max_visits_per_person": 1000,
               "revenue_min_cents": -10_000_000, "revenue_max_cents": 10_000_000}}  # fmt: skip
    assert _spec(privacy={"rho": 1e-3}, **revenue).privacy.rho == 1e-3
    assert "limit of 1e+12" in _error(privacy={"rho": 1e-5}, **revenue)


def test_nan_cost_through_json() -> None:
    # JSON has no NaN, but Python callers and pydantic's lax mode can still produce one.
    assert "positive, finite" in _error(privacy={"rho": "NaN"})


def test_rho_with_laplace_is_refused() -> None:
    with pytest.raises(ValidationError, match="laplace mechanism needs 'epsilon'"):
        Privacy(mechanism=Mechanism.LAPLACE, rho=0.1)
    with pytest.raises(ValidationError, match="laplace mechanism needs 'epsilon'"):
        Privacy(mechanism=Mechanism.LAPLACE, rho=0.1, epsilon=1.0)


def test_epsilon_with_gaussian_is_refused() -> None:
    with pytest.raises(ValidationError, match="gaussian mechanism needs 'rho'"):
        Privacy(epsilon=1.0)
    with pytest.raises(ValidationError, match="gaussian mechanism needs 'rho'"):
        Privacy(rho=0.1, epsilon=1.0)
    with pytest.raises(ValidationError, match="gaussian mechanism needs 'rho'"):
        Privacy()


@pytest.mark.parametrize("delta", [0.0, 1e-3, 0.5])
def test_delta_range(delta: float) -> None:
    with pytest.raises(ValidationError, match="delta"):
        Privacy(rho=0.1, delta=delta)


def test_period_end_before_start() -> None:
    with pytest.raises(ValidationError) as info:
        Period(start=date(2024, 3, 2), end=date(2024, 3, 1))
    message = str(info.value)
    assert "2024-03-01 lies before its start 2024-03-02" in message and "swap" in message
    assert Period(start=date(2024, 3, 1), end=date(2024, 3, 1)).start == date(2024, 3, 1)


def test_period_too_long() -> None:
    start = date(2010, 1, 1)
    ok = Period(start=start, end=date.fromordinal(start.toordinal() + MAX_PERIOD_DAYS))
    assert ok.start == start
    with pytest.raises(ValidationError, match="split the query"):
        Period(start=start, end=date.fromordinal(start.toordinal() + MAX_PERIOD_DAYS + 1))


def test_measures_must_be_non_empty_and_distinct() -> None:
    assert "at least one measure" in _error(measures=[])
    assert "lists a measure twice" in _error(measures=["visits", "visits"])
    assert "measures" in _error(measures=["mean_price"])


def test_extra_fields_are_refused() -> None:
    assert "extra" in _error(sql="SELECT 1").lower()
    assert "extra" in _error(bounds={"max_visits": 3}).lower()


def test_other_catalogue_version_refused() -> None:
    assert "catalogue_version" in _error(catalogue_version="2")


@pytest.mark.parametrize("query_id", ["short", "has space in it", "semi;colon-id", "x" * 81])
def test_query_id_syntax(query_id: str) -> None:
    assert "query_id" in _error(query_id=query_id)


def test_default_query_ids_are_unique() -> None:
    doc = _doc()
    del doc["query_id"]
    ids = {QuerySpec.model_validate(doc).query_id for _ in range(50)}
    assert len(ids) == 50


# -- immutability -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [
        ("spec", "title", "changed"),
        ("spec", "query_id", "another-query-id"),
        ("spec", "group_by", ("age_band",)),
        ("bounds", "max_visits_per_person", 1000),
        ("privacy", "rho", 5.0),
        ("period", "end", date(2030, 1, 1)),
    ],
)
def test_spec_is_frozen(target: str, field: str, value: object) -> None:
    spec = _spec()
    obj = spec if target == "spec" else getattr(spec, target)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(obj, field, value)


# -- cells --------------------------------------------------------------------------------


def test_cells_are_row_major_cartesian_product() -> None:
    spec = _spec(group_by=["age_band", "first_visit"])
    ages = DIMENSIONS["age_band"].codes
    flags = DIMENSIONS["first_visit"].codes
    expected = [(a, f) for a in ages for f in flags]
    assert list(spec.cells()) == expected
    assert spec.cell_count == len(expected) == 6 * 3
    assert expected[0] == ("lt18", "yes") and expected[1] == ("lt18", "no")


def test_cells_three_dimensions_with_filters_and_domains() -> None:
    spec = _spec(
        period={"start": "2024-11-20", "end": "2025-01-05"},
        group_by=["month", "pc4", "weekday"],
        domains={"pc4": ["9999", "1011", UNKNOWN]},
        filters={"weekday": ["sun", "mon"], "pc4": [UNKNOWN, "9999"], "channel": ["online"]},
    )
    months = ("2024-11", "2024-12", "2025-01", UNKNOWN)
    pc4s = ("9999", UNKNOWN)  # listed order of domains, restricted by the filter
    days = ("mon", "sun")  # catalogue order, not filter order
    assert spec.domain("month") == months
    assert spec.domain("pc4") == pc4s
    assert spec.domain("weekday") == days
    expected = [(m, p, d) for m in months for p in pc4s for d in days]
    assert list(spec.cells()) == expected
    assert spec.cell_count == 16


def test_filter_on_other_dimension_does_not_change_cells() -> None:
    plain = _spec()
    filtered = _spec(filters={"channel": ["online", "phone"]})
    assert list(plain.cells()) == list(filtered.cells())


def test_no_group_by_is_one_cell() -> None:
    spec = _spec(group_by=[])
    assert list(spec.cells()) == [()]
    assert spec.cell_count == 1


def test_effective_cells_per_person() -> None:
    assert Bounds(max_visits_per_person=3, max_cells_per_person=8).effective_cells_per_person == 3
    assert Bounds(max_visits_per_person=8, max_cells_per_person=3).effective_cells_per_person == 3


# -- digest and costs ---------------------------------------------------------------------


def test_digest_is_sha256_of_rfc8785_json() -> None:
    spec = _spec(filters={"channel": ["online"]})
    canonical = spec.canonical()
    assert json.loads(canonical) == spec.model_dump(mode="json")
    assert b" " not in canonical and b"\n" not in canonical
    keys = list(json.loads(canonical))
    assert keys == sorted(keys)
    assert spec.digest() == hashlib.sha256(canonical).hexdigest()


def test_digest_stable_across_dict_ordering() -> None:
    a = {
        "query_id": "test-query-0001",
        "period": {"start": "2024-01-01", "end": "2024-12-31"},
        "group_by": ["pc4"],
        "domains": {"pc4": ["3511", "1011"]},
        "filters": {"channel": ["online"], "age_band": ["lt18", "65plus"]},
        "privacy": {"rho": 0.25, "mechanism": "gaussian"},
        "bounds": {"max_visits_per_person": 4, "revenue_max_cents": 999},
    }
    b = {
        "bounds": {"revenue_max_cents": 999, "max_visits_per_person": 4},
        "privacy": {"mechanism": "gaussian", "rho": 0.25},
        "filters": {"age_band": ["lt18", "65plus"], "channel": ["online"]},
        "domains": {"pc4": ["3511", "1011"]},
        "group_by": ["pc4"],
        "period": {"end": "2024-12-31", "start": "2024-01-01"},
        "query_id": "test-query-0001",
    }
    one, two = QuerySpec.model_validate(a), QuerySpec.model_validate(b)
    assert one.digest() == two.digest()
    again = QuerySpec.model_validate_json(json.dumps(b, indent=3))
    assert again.digest() == one.digest()
    round_trip = QuerySpec.model_validate_json(one.model_dump_json())
    assert round_trip == one and round_trip.digest() == one.digest()


def test_digest_changes_with_every_field() -> None:
    base = _doc(
        group_by=["artform"],
        filters={"channel": ["online"]},
        measures=["visits", "persons"],
    )
    variants = {
        "query_id": {"query_id": "test-query-0002"},
        "title": {"title": "x"},
        "period.start": {"period": {"start": "2024-01-02", "end": "2024-12-31"}},
        "period.end": {"period": {"start": "2024-01-01", "end": "2024-12-30"}},
        "filters": {"filters": {"channel": ["phone"]}},
        "filters+": {"filters": {"channel": ["online"], "weekday": ["mon"]}},
        "group_by": {"group_by": ["age_band"]},
        "domains": {"group_by": ["pc4"], "domains": {"pc4": ["3511"]}},
        "measures": {"measures": ["visits"]},
        "measures.order": {"measures": ["persons", "visits"]},
        "bounds.c": {"bounds": {"max_visits_per_person": 11}},
        "bounds.g": {"bounds": {"max_cells_per_person": 11}},
        "bounds.lo": {"bounds": {"revenue_min_cents": -1}},
        "bounds.hi": {"bounds": {"revenue_max_cents": 10_001}},
        "privacy.rho": {"privacy": {"rho": 0.1000001}},
        "privacy.delta": {"privacy": {"rho": 0.1, "delta": 1e-8}},
        "privacy.mechanism": {"privacy": {"mechanism": "laplace", "epsilon": 0.1}},
        "mode": {"mode": "secure"},
    }
    digests = {"base": QuerySpec.model_validate(base).digest()}
    for name, change in variants.items():
        digests[name] = QuerySpec.model_validate({**base, **change}).digest()
    assert len(set(digests.values())) == len(digests), digests


def test_rho_charged() -> None:
    assert Privacy(rho=0.3).rho_charged == 0.3
    assert Privacy(mechanism=Mechanism.LAPLACE, epsilon=0.6).rho_charged == pytest.approx(0.18)
    assert Privacy(mechanism=Mechanism.LAPLACE, epsilon=2.0).rho_charged == 2.0
    spec = _spec(measures=["visits", "persons", "revenue"], privacy={"rho": 0.3})
    assert spec.rho_per_measure() == pytest.approx(0.1)
    laplace = _spec(
        measures=["visits", "persons"], privacy={"mechanism": "laplace", "epsilon": 1.0}
    )
    assert laplace.rho_per_measure() == pytest.approx(0.25)


def test_measures_are_enum_members() -> None:
    spec = _spec(measures=["revenue", "persons"])
    assert spec.measures == (Measure.REVENUE, Measure.PERSONS)


def test_value_lists_cannot_be_changed_in_place() -> None:
    spec = _spec(filters={"artform": ["dance"]}, group_by=["month"], domains={"month": ["2025-01"]})
    digest = spec.digest()
    for mapping in (spec.filters, spec.domains):
        with pytest.raises(TypeError):
            mapping["artform"] = ("not-a-code",)  # type: ignore[index]
        with pytest.raises(TypeError):
            mapping.update({"artform": ("x",)})
        with pytest.raises(TypeError):
            del mapping["artform"]
    assert spec.digest() == digest
    assert QuerySpec.model_validate_json(spec.model_dump_json()) == spec
