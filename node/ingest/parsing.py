"""Parsing single values the way Dutch exports write them, and the fields derived from them.

Every parser raises :class:`ValueProblem` with a reason that does *not* contain the value, so the
caller decides whether the value may be quoted (an amount, a date) or not (a birth date). Date and
time parsing is cached: an export of a million rows holds only a few thousand distinct dates.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from protocol.catalogue import UNKNOWN, WEEKDAY_CODES, age_band, lead_time_band

ISO = "iso"
MAX_CENTS = 100_000_000  # one million euros: far above any ticket, far below the column's limit
JULY = 7
EARLIEST_BIRTH_YEAR = 1900  # an earlier birth date is a typing error or a placeholder

_SPACES = re.compile(r"[\s\u00a0\u202f]+")
_AMOUNT = {
    ",": re.compile(r"(?P<int>\d{1,3}(?:\.\d{3})+|\d+)(?:,(?P<frac>\d+|-{1,2}))?"),
    ".": re.compile(r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+|-{1,2}))?"),
}
_CENTS = re.compile(r"\d+")
_INTEGER = re.compile(r"\d{1,3}(?:[.,\s]\d{3})+|\d+")
_POSTCODE = re.compile(r"([1-9]\d{3})[\s-]*(?:[A-Za-z]{2})?")

# Age bands and lead-time bands by whole number, so the hot path is a list index.
AGE_BANDS: tuple[str, ...] = tuple(age_band(years) for years in range(121))
LEAD_TIME_BANDS: tuple[str, ...] = tuple(lead_time_band(days) for days in range(400))


class ValueProblem(ValueError):
    """A value cannot be read. ``str(problem)`` completes a sentence that starts with the value,
    e.g. "is not an amount"."""


def amount_cents(text: str, decimal: str = ",", unit: str = "euros") -> int:
    """An amount in whole cents: ``12,50``, ``1.234,50``, ``€ 12,-``, ``-5,00`` with a decimal
    comma; ``12.50``, ``1,234.50`` with a decimal point; ``1250`` when the unit is cents. More
    than two decimals are rounded half up to whole cents. Empty means 0."""
    cleaned = _SPACES.sub("", text).replace("€", "").replace("EUR", "").replace("eur", "")
    if not cleaned:
        return 0
    negative = cleaned[0] == "-"
    if cleaned[0] in "+-":
        cleaned = cleaned[1:]
    if unit == "cents":
        if not _CENTS.fullmatch(cleaned):
            raise ValueProblem("is not a whole number of cents")
        cents = int(cleaned)
    else:
        match = _AMOUNT[decimal].fullmatch(cleaned)
        if match is None:
            sep = "comma" if decimal == "," else "point"
            example = "12,50 or 1.234,50" if decimal == "," else "12.50 or 1,234.50"
            raise ValueProblem(f"is not an amount (expected a decimal {sep}, e.g. {example})")
        whole = match["int"].replace("." if decimal == "," else ",", "")
        frac = match["frac"] or ""
        if frac.startswith("-"):
            frac = ""
        value = Decimal(f"{whole}.{frac or '0'}") * 100
        cents = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if cents > MAX_CENTS:
        raise ValueProblem("is too large for a ticket price")
    return -cents if negative else cents


def integer(text: str) -> int:
    """A whole, non-negative number; thousands may be grouped with '.', ',' or a space."""
    cleaned = text.strip()
    if not _INTEGER.fullmatch(cleaned):
        raise ValueProblem("is not a whole number")
    return int(re.sub(r"[.,\s]", "", cleaned))


def birth_year(text: str) -> int:
    """A four-digit year. Whether it is plausible (from 1900, not after the event) is decided
    where the event's date is known; an implausible year gives age band 'unknown'."""
    year = integer(text)
    if not 1000 <= year <= 9999:
        raise ValueProblem("is not a year of four digits")
    return year


def pc4(text: str) -> str | None:
    """The four-digit area of a Dutch postcode ("1234 AB", "1234ab", "1234"); None when the
    value is not a Dutch postcode (empty, foreign, malformed)."""
    match = _POSTCODE.fullmatch(text.strip())
    return match[1] if match else None


def age_on(birth: date, day: date) -> int:
    """Age in whole years on ``day`` (a person born on 29 February turns a year older on
    1 March in non-leap years)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def age_from_birth_year(year: int, day: date) -> int:
    """Approximate age on ``day`` when only the birth year is known: as if born on 1 July."""
    return day.year - year - (day.month < JULY)


def age_band_of(age: int | None) -> str:
    if age is None or not 0 <= age <= 120:
        return UNKNOWN
    return AGE_BANDS[age]


def lead_time_of(days: int) -> str:
    if 0 <= days < len(LEAD_TIME_BANDS):
        return LEAD_TIME_BANDS[days]
    return lead_time_band(days)


def period_codes(day: date) -> tuple[str, str, str, str]:
    """(month "YYYY-MM", quarter "YYYY-Qn", year "YYYY", weekday code) of a date."""
    return (
        f"{day.year:04d}-{day.month:02d}",
        f"{day.year:04d}-Q{(day.month + 2) // 3}",
        f"{day.year:04d}",
        WEEKDAY_CODES[day.weekday()],
    )


class DateTimeParser:
    """Dates and times in the profile's formats, with ISO 8601 always understood as well.

    A date-time value is a date, optionally followed by a space (or ISO's "T") and a time. The
    date and the time part are parsed and cached separately: a million order times written to
    the minute share a few hundred dates and at most 1,440 times.
    """

    def __init__(self, date_formats: tuple[str, ...], time_formats: tuple[str, ...]) -> None:
        self.date_formats = tuple(f for f in date_formats if f != ISO)
        self.time_formats = tuple(f for f in time_formats if f != ISO)
        self._dates: dict[str, date | str] = {}
        self._times: dict[str, time | str] = {}
        example = date(2025, 12, 31)
        shown = [example.strftime(f) for f in self.date_formats] + [example.isoformat()]
        self._date_hint = f"is not a date (expected e.g. {' or '.join(shown)})"
        self._time_hint = "is not a time of day (expected e.g. 20:15)"

    def read_date(self, text: str) -> date:
        found = self._dates.get(text)
        if found is None:
            found = self._dates[text] = self._parse_date(text.strip())
        if isinstance(found, str):
            raise ValueProblem(found)
        return found

    def read_time(self, text: str) -> time:
        found = self._times.get(text)
        if found is None:
            found = self._times[text] = self._parse_time(text.strip())
        if isinstance(found, str):
            raise ValueProblem(found)
        return found

    @staticmethod
    def split(text: str) -> tuple[str, str]:
        """The date part and the (possibly empty) time part of a date-time value."""
        head, _, tail = text.strip().partition(" ")
        if not tail and len(head) > 10 and head[10] in "Tt":
            head, tail = head[:10], head[11:]
        return head, tail.strip()

    def day_of(self, text: str) -> date:
        """The date of a date-time value; a time part, if present, must be valid."""
        head, tail = self.split(text)
        day = self.read_date(head)
        if tail:
            self.read_time(tail)
        return day

    def read_datetime(self, text: str) -> datetime:
        head, tail = self.split(text)
        day = self.read_date(head)
        moment = self.read_time(tail) if tail else time(0, 0)
        return datetime.combine(day, moment.replace(tzinfo=None))

    def _parse_date(self, text: str) -> date | str:
        for pattern in self.date_formats:
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
        try:
            return date.fromisoformat(text)
        except ValueError:
            return self._date_hint

    def _parse_time(self, text: str) -> time | str:
        for pattern in self.time_formats:
            try:
                return datetime.strptime(text, pattern).time()
            except ValueError:
                continue
        try:
            return time.fromisoformat(text)
        except ValueError:
            return self._time_hint
