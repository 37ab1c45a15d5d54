"""Parsing single values the Dutch way, and the derived fields (no database)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from node import identity
from node.ingest.keys import pseudonym_function, ticket_ref_function
from node.ingest.parsing import (
    DateTimeParser,
    ValueProblem,
    age_band_of,
    age_from_birth_year,
    age_on,
    amount_cents,
    integer,
    lead_time_of,
    pc4,
    period_codes,
)

SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("12,50", 1250),
        ("1.234,50", 123450),
        ("123.456,78", 12345678),
        ("€ 12,-", 1200),
        ("€12,5", 1250),
        ("-5,00", -500),
        ("0", 0),
        ("", 0),
        ("  7 ", 700),
        ("12,505", 1251),
        ("1 234,50", 123450),
    ],
)
def test_amounts_with_a_decimal_comma(text: str, cents: int) -> None:
    assert amount_cents(text) == cents


@pytest.mark.parametrize(("text", "cents"), [("12.50", 1250), ("1,234.50", 123450), ("3", 300)])
def test_amounts_with_a_decimal_point(text: str, cents: int) -> None:
    assert amount_cents(text, ".") == cents


@pytest.mark.parametrize("text", ["12,5x", "12.50", "1.23,45", "abc", "12,50,00", "--5"])
def test_bad_amounts_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ValueProblem, match="is not an amount"):
        amount_cents(text)


def test_amounts_in_cents_and_the_upper_limit() -> None:
    assert amount_cents("1250", unit="cents") == 1250
    with pytest.raises(ValueProblem, match="whole number of cents"):
        amount_cents("12,50", unit="cents")
    with pytest.raises(ValueProblem, match="too large"):
        amount_cents("2.000.000,00")


@pytest.mark.parametrize(
    ("text", "area"),
    [
        ("1234 AB", "1234"),
        ("1234ab", "1234"),
        ("1234", "1234"),
        (" 3512-ab ", "3512"),
        ("0123 AB", None),
        ("B-2000", None),
        ("50667", None),
        ("12AB 34", None),
        ("", None),
    ],
)
def test_pc4_from_dutch_postcodes(text: str, area: str | None) -> None:
    assert pc4(text) == area


def test_dates_in_profile_formats_and_iso() -> None:
    parser = DateTimeParser(("%d-%m-%Y",), ("%H:%M",))
    assert parser.read_date("14-03-2025") == date(2025, 3, 14)
    assert parser.read_date("2025-03-14") == date(2025, 3, 14)
    assert parser.read_datetime("14-03-2025 20:15") == datetime(2025, 3, 14, 20, 15)
    assert parser.read_datetime("2025-03-14T20:15:00+01:00") == datetime(2025, 3, 14, 20, 15)
    assert parser.day_of("14-03-2025 20:15") == date(2025, 3, 14)
    assert parser.read_time("20:15:30") == time(20, 15, 30)
    with pytest.raises(ValueProblem, match="not a date"):
        parser.read_date("31-02-2025")
    with pytest.raises(ValueProblem, match="not a time"):
        parser.day_of("14-03-2025 25:00")


def test_age_at_the_event_date_across_a_birthday() -> None:
    born = date(2007, 3, 15)
    assert age_on(born, date(2025, 3, 14)) == 17
    assert age_on(born, date(2025, 3, 15)) == 18
    assert age_band_of(age_on(born, date(2025, 3, 14))) == "lt18"
    assert age_band_of(age_on(born, date(2025, 3, 15))) == "18_29"
    # Born on 29 February: a year older on 1 March in a non-leap year.
    assert age_on(date(2004, 2, 29), date(2025, 2, 28)) == 20
    assert age_on(date(2004, 2, 29), date(2025, 3, 1)) == 21
    # Only a birth year: as if born on 1 July.
    assert age_from_birth_year(2007, date(2025, 6, 30)) == 17
    assert age_from_birth_year(2007, date(2025, 7, 1)) == 18
    assert age_band_of(None) == "unknown"
    assert age_band_of(130) == "unknown"


@pytest.mark.parametrize(
    ("days", "band"),
    [(0, "same_day"), (1, "1_6"), (6, "1_6"), (7, "7_29"), (29, "7_29"), (30, "30_89"),
     (89, "30_89"), (90, "90plus"), (400, "90plus"), (-1, "unknown")],
)  # fmt: skip
def test_lead_time_bands(days: int, band: str) -> None:
    assert lead_time_of(days) == band


def test_period_codes() -> None:
    assert period_codes(date(2025, 3, 14)) == ("2025-03", "2025-Q1", "2025", "fri")
    assert period_codes(date(2025, 10, 5)) == ("2025-10", "2025-Q4", "2025", "sun")


def test_integers_with_thousands_separators() -> None:
    assert integer("1.200") == 1200
    assert integer("850") == 850
    with pytest.raises(ValueProblem):
        integer("8,5")


@pytest.mark.parametrize(
    "identifier",
    ["123456", "Jan.Jansen@Example.NL", " klant 12 ", "Zoë@voorbeeld.nl", "ＡＢＣ", "x\u00a0y"],
)
def test_bulk_pseudonyms_equal_the_identity_module(identifier: str) -> None:
    assert pseudonym_function(SECRET)(identifier) == identity.pseudonym(SECRET, identifier)


@pytest.mark.parametrize("ticket", ["1", "T00000001", "Ticket-Ä-9"])
def test_bulk_ticket_refs_equal_the_identity_module(ticket: str) -> None:
    assert ticket_ref_function(SECRET, "kassa")(ticket) == identity.ticket_ref(
        SECRET, "kassa", ticket
    )
