"""Reading the values of one row's fields, with the counters behind the import's warnings.

The row function (:mod:`node.ingest.transform`) caches what these methods return per distinct raw
value, so they run once per distinct value, not once per row. A reason for a reject quotes the
raw value only for columns that do not identify a person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date

from node.ingest.columns import Columns
from node.ingest.fields import FIELDS, UNKNOWN
from node.ingest.keys import pseudonym_function
from node.ingest.parsing import (
    JULY,
    DateTimeParser,
    ValueProblem,
    amount_cents,
    birth_year,
    integer,
)
from node.ingest.profile import MappedValue, Profile

UNMAPPED = "\x00unmapped"  # marker: the value is not in the profile's map
BAD = "\x00bad"  # marker: the value cannot be read (or, for status, is empty)
IMPLAUSIBLE = "\x00implausible"  # marker: a birth date or year after today
SHOWN_VALUES = 5

# (counter, value) pairs to count once for every row that has a cached combination of values.
Notes = tuple[tuple[Counter[str], str], ...]
# (price in cents, status, price type, channel, attended, notes)
TicketValues = tuple[int, str, str, str, bool | None, Notes]
TICKET_FIELDS = ("price", "status", "price_type", "channel", "attended")


class Problem:
    """Why every row with a given (cached) value is rejected: the column and the reason."""

    __slots__ = ("column", "reason")

    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason


def reason_for(field_name: str, raw: str, problem: ValueProblem | str) -> str:
    """A reject reason that quotes the value only for non-identifying fields."""
    if FIELDS[field_name].identifying:
        return f"the value {problem}"
    return f"{raw.strip()!r} {problem}"


class ValueReader:
    """Converts raw values of one profile's fields and counts what could not be mapped."""

    def __init__(
        self, profile: Profile, columns: Columns, secret: bytes, today: date | None = None
    ) -> None:
        self.profile = profile
        self.columns = columns
        self.today = today or date.today()
        self.dates = DateTimeParser(profile.date_formats, profile.time_formats)
        self.pseudonym = pseudonym_function(secret)
        self.unmapped: dict[str, Counter[str]] = {
            name: Counter() for name in ("artform", "price_type", "channel", "segment", "attended")
        }
        self.stats: Counter[str] = Counter()
        self.event_conflicts: Counter[str] = Counter()

    def coded(self, field_name: str, raw: str) -> str:
        """A catalogue code, :data:`UNMAPPED`, or (status only) :data:`BAD` when empty."""
        if not raw.strip():
            default = self.profile.defaults.get(field_name)
            if isinstance(default, str):
                return default
            return BAD if field_name == "status" else UNKNOWN
        try:
            value = self.profile.map_value(field_name, raw)
        except KeyError:
            return UNMAPPED
        return value if isinstance(value, str) else UNKNOWN

    def boolean(self, field_name: str, raw: str) -> bool | str | None:
        """True, False, None (unknown) or :data:`UNMAPPED`."""
        if not raw.strip():
            default = self.profile.defaults.get(field_name)
            return default if isinstance(default, bool) else None
        try:
            value: MappedValue = self.profile.map_value(field_name, raw)
        except KeyError:
            return UNMAPPED
        return value if isinstance(value, bool) else None

    def person(self, raw: str) -> str:
        """The pseudonym of a customer identifier; "" when the value is empty."""
        text = raw.strip()
        return self.pseudonym(text) if text else ""

    def ordered_day(self, raw: str) -> tuple[str, int] | str:
        """(ISO date, day number) of an order date(-time); a reason when it cannot be read,
        "" when it is empty."""
        if not raw.strip():
            return ""
        try:
            day = self.dates.day_of(raw)
        except ValueProblem as problem:
            return reason_for("ordered_at", raw, problem)
        return day.isoformat(), day.toordinal()

    def ordered_time(self, raw: str) -> str:
        """ "" if the time part of an order date-time is valid, else the reason."""
        try:
            self.dates.read_time(raw)
        except ValueProblem as problem:
            return f"the time in that value {problem}"
        return ""

    def birth(self, field_name: str, raw: str) -> tuple[int, int] | int | str:
        """(birth year, month * 100 + day) for a birth date or year (a birth year counts as
        born on 1 July), an age in years for an age; "" when empty, :data:`BAD` when not
        readable, :data:`IMPLAUSIBLE` when in the future. (Before 1900 or after the event is
        decided where the event is known.)"""
        if not raw.strip():
            return ""
        try:
            if field_name == "birth_date":
                born = self.dates.day_of(raw)  # an Excel date cell may carry a time (00:00)
                if born > self.today:
                    return IMPLAUSIBLE
                return (born.year, born.month * 100 + born.day)
            if field_name == "birth_year":
                year = birth_year(raw)
                return IMPLAUSIBLE if year > self.today.year else (year, JULY * 100 + 1)
            return integer(raw)
        except ValueProblem:
            return BAD

    def ticket(self, fields: Sequence[str], raw: object) -> TicketValues | Problem:
        """Price, status, price type, channel and attended of one combination of raw values
        (a tuple in the order of ``fields``); a Problem if such rows are rejected."""
        values = dict(zip(fields, raw if isinstance(raw, tuple) else (raw,), strict=True))
        defaults, label = self.profile.defaults, self.columns.label
        notes: list[tuple[Counter[str], str]] = []
        price = 0
        if "price" in values:
            try:
                price = amount_cents(values["price"], self.profile.decimal, self.profile.price_unit)
            except ValueProblem as problem:
                return Problem(label("price"), reason_for("price", values["price"], problem))
        status = str(defaults.get("status", "sold"))
        if "status" in values:
            status = self.coded("status", values["status"])
            if status is UNMAPPED:
                return Problem(
                    label("status"),
                    f"{values['status'].strip()!r} is not a known status; map it to sold, "
                    "refunded or cancelled in the profile's [values.status]",
                )
            if status is BAD:
                return Problem(label("status"), "the status is empty")
        coded: dict[str, str] = {}
        for name in ("price_type", "channel"):
            default = defaults.get(name)
            coded[name] = default if isinstance(default, str) else UNKNOWN
            if name in values:
                coded[name] = self.coded(name, values[name])
                if coded[name] is UNMAPPED:
                    notes.append((self.unmapped[name], values[name].strip()))
                    coded[name] = UNKNOWN
        default_attended = defaults.get("attended")
        attended = default_attended if isinstance(default_attended, bool) else None
        if "attended" in values:
            seen = self.boolean("attended", values["attended"])
            if seen is UNMAPPED:
                notes.append((self.unmapped["attended"], values["attended"].strip()))
            attended = seen if isinstance(seen, bool) else None
        return (price, status, coded["price_type"], coded["channel"], attended, tuple(notes))

    def warnings(self) -> list[str]:
        """What the operator should know; quotes only values of non-identifying columns."""
        out = list(self.columns.notes)
        names = {
            "artform": "an artform",
            "price_type": "a price type",
            "channel": "a sales channel",
            "segment": "a segment",
            "attended": "an attended (scanned) value",
        }
        for field_name, counter in self.unmapped.items():
            if not counter:
                continue
            total = sum(counter.values())
            shown = ", ".join(
                f"{value!r} ({count:,})" for value, count in counter.most_common(SHOWN_VALUES)
            )
            more = len(counter) - SHOWN_VALUES
            others = f" and {more} other value(s)" if more > 0 else ""
            counted = "they count as 'unknown'" if field_name != "attended" else "left empty"
            out.append(
                f"{total:,} row(s) had {names[field_name]} value that is not in the profile's "
                f"map: {shown}{others}; {counted}. Add them to [values.{field_name}] to fix this."
            )
        invalid, empty = self.stats["postcode_invalid"], self.stats["postcode_empty"]
        if invalid:
            out.append(
                f"{invalid:,} row(s) had a postcode that is not a Dutch postcode (foreign or "
                "malformed); their PC4 area is unknown."
            )
        if empty:
            out.append(f"{empty:,} row(s) had no postcode; their PC4 area is unknown.")
        if self.stats["birth_implausible"]:
            out.append(
                f"{self.stats['birth_implausible']:,} row(s) had a birth date before 1900 or after "
                "the event (or an age above 120); such a date is almost always a typing error or "
                "a placeholder, so their age band is unknown. Check the birth dates in your "
                "ticketing system."
            )
        if self.stats["birth_invalid"]:
            out.append(
                f"{self.stats['birth_invalid']:,} row(s) had a birth date, birth year or age "
                "that could not be read; their age band is unknown."
            )
        if self.event_conflicts:
            keys = "; ".join(k for k, _ in self.event_conflicts.most_common(SHOWN_VALUES))
            out.append(
                f"{len(self.event_conflicts):,} event(s) appear with different details (such as "
                f"the start time) on different rows, e.g. {keys}; the first row's details were "
                "used."
            )
        return out
