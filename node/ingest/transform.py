"""Turning one source record into one canonical admission row, or a reject.

:class:`RowCompiler` resolves the profile's columns against the file's header once, then builds a
single function that converts a record. That function is the hot loop of the import, so it is
written for speed: plain tuples, per-column caches from raw text to parsed value (an export of a
million rows holds a few hundred distinct prices and dates), and identifiers hashed once per
distinct value. Identifying values (customer ids, e-mail addresses, postcodes, birth dates) live
only in those in-memory caches and are never part of a row, a reject or a warning.
"""

from __future__ import annotations

import hashlib
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, time

from node.ingest.errors import UnreadableFile
from node.ingest.fields import FIELDS, UNKNOWN, Kind
from node.ingest.keys import pseudonym_function, ticket_ref_function
from node.ingest.parsing import (
    AGE_BANDS,
    JULY,
    LEAD_TIME_BANDS,
    DateTimeParser,
    ValueProblem,
    amount_cents,
    birth_year,
    integer,
    lead_time_of,
    pc4,
    period_codes,
)
from node.ingest.profile import MappedValue, Profile
from node.ingest.report import Reject

TEXT_LIMIT = 255
KEY_LIMIT = 128
_UNMAPPED = "\x00unmapped"  # cache marker: the value is not in the profile's map
_BAD = "\x00bad"  # cache marker: the value could not be read (identifying fields)

# A parsed row: (line, ticket_ref, person pseudonym, event number, order date as ISO text,
# lead-time band, price in cents, price type, channel, status, attended, age band, PC4, segment).
# Only plain values, so that chunks of rows travel cheaply between processes.
Row = tuple[
    int, str, str, int, str | None, str, int, str, str, str, bool | None, str, str | None, str,
]  # fmt: skip
Transform = Callable[[int, Sequence[str]], "Row | Reject"]


class EventInfo:
    """An event as read from the file, with the date fields every admission copies."""

    __slots__ = (
        "artform",
        "capacity",
        "columns",
        "day",
        "hall",
        "id",
        "is_free",
        "key",
        "month",
        "month_day",
        "number",
        "ordinal",
        "production",
        "quarter",
        "starts_at",
        "title",
        "unmapped_artform",
        "venue",
        "weekday",
        "year",
        "year_number",
    )

    def __init__(
        self,
        key: str,
        starts_at: datetime,
        *,
        title: str | None,
        production: str | None,
        artform: str,
        venue: str | None,
        hall: str | None,
        capacity: int | None,
        is_free: bool,
        unmapped_artform: str | None,
    ) -> None:
        self.key = key
        self.starts_at = starts_at
        self.title = title
        self.production = production
        self.artform = artform
        self.venue = venue
        self.hall = hall
        self.capacity = capacity
        self.is_free = is_free
        self.unmapped_artform = unmapped_artform
        self.day = starts_at.date()
        self.ordinal = self.day.toordinal()
        self.month, self.quarter, self.year, self.weekday = period_codes(self.day)
        self.year_number = self.day.year
        self.month_day = self.day.month * 100 + self.day.day
        self.id: int | None = None
        self.number = 0  # position in the import's list of events, set by the RowCompiler
        # The admission columns copied from the event, set by the writer once the id is known.
        self.columns: tuple[object, ...] = ()

    def details(self) -> tuple[object, ...]:
        return (
            self.title,
            self.production,
            self.artform,
            self.venue,
            self.hall,
            self.starts_at,
            self.capacity,
            self.is_free,
        )


class Problem:
    """A cached reason why every row of one event is rejected."""

    __slots__ = ("column", "reason")

    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason


def _normal(name: str) -> str:
    return " ".join(name.split()).casefold()


def _reason(field_name: str, raw: str, problem: ValueProblem | str) -> str:
    """A reject reason that quotes the value only for non-identifying fields."""
    if FIELDS[field_name].identifying:
        return f"the value {problem}"
    return f"{raw.strip()!r} {problem}"


class RowCompiler:
    """Resolves a profile against a file's header and compiles the record → row function."""

    def __init__(
        self,
        profile: Profile,
        header: Sequence[str],
        labels: Sequence[str],
        *,
        secret: bytes,
        source: str,
        file_name: str,
        today: date | None = None,
    ) -> None:
        self.profile = profile
        self.labels = list(labels)
        self.secret = secret
        self.source = source
        self.file_name = file_name
        self.today = today or date.today()
        self.ncols = len(header)
        self.index: dict[str, int] = {}
        self.customer_index: tuple[int, ...] = ()
        self.notes: list[str] = []
        self.unmapped: dict[str, Counter[str]] = {
            name: Counter() for name in ("artform", "price_type", "channel", "segment", "attended")
        }
        self.stats: Counter[str] = Counter()
        self.event_conflicts: Counter[str] = Counter()
        self.new_events: list[EventInfo] = []
        self._event_count = 0
        self.dates = DateTimeParser(profile.date_formats, profile.time_formats)
        self.pseudonym = pseudonym_function(secret)
        self.ticket_ref = ticket_ref_function(secret, source)
        self._resolve(header)

    # -- columns ------------------------------------------------------------------------------

    def _resolve(self, header: Sequence[str]) -> None:
        positions: dict[str, list[int]] = {}
        for i, name in enumerate(header):
            positions.setdefault(_normal(name), []).append(i)

        def find(column: str) -> int | None:
            found = positions.get(_normal(column))
            if not found:
                return None
            if len(found) > 1:
                raise UnreadableFile(
                    f"{self.file_name}: the column {column!r} appears {len(found)} times in the "
                    "header; rename or remove the extra ones"
                )
            return found[0]

        missing: list[str] = []
        absent_optional: list[str] = []
        for name, column in self.profile.columns.items():
            i = find(column)
            if i is not None:
                self.index[name] = i
            elif name in ("ticket_id", "event_start"):
                missing.append(f"{column!r} ({name})")
            else:
                absent_optional.append(f"{column!r} ({name})")
        customer = [(c, find(c)) for c in self.profile.customer]
        self.customer_index = tuple(i for _, i in customer if i is not None)
        absent_customer = [c for c, i in customer if i is None]
        if customer and not self.customer_index and self.profile.missing_customer == "reject":
            missing.append(" or ".join(repr(c) for c in self.profile.customer) + " (customer)")
        elif absent_customer:
            absent_optional += [f"{c!r} (customer)" for c in absent_customer]
        if missing:
            found = ", ".join(repr(h) for h in header if h) or "none"
            raise UnreadableFile(
                f"{self.file_name}: required column(s) missing: {', '.join(missing)}. "
                f"The file has these columns: {found}. Check that you chose the right profile "
                f"(this is {self.profile.name!r}) or adjust the profile's [columns]."
            )
        if absent_optional:
            self.notes.append(
                "The profile maps these columns, but the file does not have them, so they were "
                f"skipped: {', '.join(absent_optional)}."
            )
        if "artform" not in self.index and "artform" not in self.profile.defaults:
            self.notes.append(
                "The file has no artform column and no default artform was given, so every "
                "event's artform is 'unknown'. Give one with a default, e.g. artform=theatre."
            )

    def take_new_events(self) -> list[EventInfo]:
        """The events first seen since the last call, in order of their numbers."""
        taken, self.new_events = self.new_events, []
        return taken

    def label(self, field_name: str) -> str:
        return self.labels[self.index[field_name]]

    # -- single values ------------------------------------------------------------------------

    def _coded(self, field_name: str, raw: str) -> str:
        """A catalogue code, ``_UNMAPPED``, or (status only) ``_BAD`` for an empty value."""
        if not raw.strip():
            default = self.profile.defaults.get(field_name)
            if isinstance(default, str):
                return default
            return _BAD if field_name == "status" else UNKNOWN
        try:
            value = self.profile.map_value(field_name, raw)
        except KeyError:
            return _UNMAPPED
        return value if isinstance(value, str) else UNKNOWN

    def _boolean(self, field_name: str, raw: str) -> bool | None | str:
        if not raw.strip():
            default = self.profile.defaults.get(field_name)
            return default if isinstance(default, bool) else None
        try:
            value: MappedValue = self.profile.map_value(field_name, raw)
        except KeyError:
            return _UNMAPPED
        return value if isinstance(value, bool) else None

    def _person(self, raw: str) -> str:
        text = raw.strip()
        return self.pseudonym(text) if text else ""

    def _price(self, raw: str) -> int | str:
        try:
            return amount_cents(raw, self.profile.decimal, self.profile.price_unit)
        except ValueProblem as problem:
            return _reason("price", raw, problem)

    def _ordered_day(self, raw: str) -> tuple[str, int] | str:
        """(ISO date, day number) of an order date-time; a reason string if it cannot be read,
        "" if it is empty."""
        if not raw.strip():
            return ""
        try:
            day = self.dates.day_of(raw)
        except ValueProblem as problem:
            return _reason("ordered_at", raw, problem)
        return day.isoformat(), day.toordinal()

    def _ordered_time(self, raw: str) -> str:
        """Empty if the time part of an order date-time is valid, else a reason string."""
        try:
            self.dates.time(raw)
        except ValueProblem as problem:
            return f"the time in that value {problem}"
        return ""

    def _birth(self, field_name: str, raw: str) -> tuple[int, int] | int | str:
        """(birth year, month * 100 + day) for a birth date or year, an age in years for an
        age; "" when empty, ``_BAD`` when unreadable. Only a birth year: as if born on 1 July."""
        if not raw.strip():
            return ""
        try:
            if field_name == "birth_date":
                born = self.dates.date(raw)
                return (born.year, born.month * 100 + born.day)
            if field_name == "birth_year":
                return (birth_year(raw, self.today), JULY * 100 + 1)
            return integer(raw)
        except ValueProblem:
            return _BAD

    def _event(self, raw: Sequence[str], fields: Sequence[str]) -> EventInfo | Problem:
        values = dict(zip(fields, raw, strict=True))
        defaults = self.profile.defaults

        def text(name: str) -> str | None:
            value = (values.get(name) or "").strip()
            if not value:
                default = defaults.get(name)
                return default if isinstance(default, str) else None
            return value[:TEXT_LIMIT]

        start_raw = values["event_start"]
        if not start_raw.strip():
            return Problem(self.label("event_start"), "the event's start date is empty")
        head, tail = self.dates.split(start_raw)
        try:
            day = self.dates.date(head)
        except ValueProblem as problem:
            return Problem(self.label("event_start"), f"{start_raw.strip()!r} {problem}")
        separate_time = (values.get("event_time") or "").strip()
        column = "event_time" if separate_time else "event_start"
        moment = time(0, 0)
        if separate_time or tail:
            try:
                moment = self.dates.time(separate_time or tail)
            except ValueProblem as problem:
                return Problem(self.label(column), f"{values[column].strip()!r} {problem}")
        starts_at = datetime.combine(day, moment.replace(tzinfo=None))

        title, venue, hall = text("event_title"), text("venue"), text("hall")
        if "event_id" in values:
            key = values["event_id"].strip()
            if not key:
                return Problem(self.label("event_id"), "the event id is empty")
            if len(key) > KEY_LIMIT:
                return Problem(self.label("event_id"), f"the event id is longer than {KEY_LIMIT}")
        else:
            basis = "\x00".join((starts_at.isoformat(), title or "", venue or "", hall or ""))
            key = "auto-" + hashlib.sha256(basis.encode()).hexdigest()[:32]

        unmapped_artform = None
        artform = self._coded("artform", values.get("artform", ""))
        if artform == _UNMAPPED:
            unmapped_artform, artform = values["artform"].strip(), UNKNOWN

        capacity: int | None = None
        if (values.get("capacity") or "").strip():
            try:
                capacity = integer(values["capacity"])
            except ValueProblem as problem:
                return Problem(self.label("capacity"), _reason("capacity", values["capacity"],
                                                               problem))
        elif isinstance(defaults.get("capacity"), int):
            capacity = int(defaults["capacity"] or 0)

        free = self._boolean("is_free", values.get("is_free", ""))
        if free == _UNMAPPED:
            return Problem(
                self.label("is_free"),
                f"{values['is_free'].strip()!r} is not yes or no; add it to [values.is_free]",
            )
        return EventInfo(
            key,
            starts_at,
            title=title,
            production=text("production"),
            artform=artform,
            venue=venue,
            hall=hall,
            capacity=capacity,
            is_free=bool(free),
            unmapped_artform=unmapped_artform,
        )

    # -- the compiled row function --------------------------------------------------------------

    def compile(self) -> Transform:  # noqa: C901 - one flat function is the fast path
        """The function that turns (line, record) into a Row or a Reject."""
        profile, idx, labels = self.profile, self.index, self.labels
        file_name, ncols = self.file_name, self.ncols
        source = self.source
        stats, unmapped = self.stats, self.unmapped
        coded, boolean = self._coded, self._boolean

        i_ticket = idx["ticket_id"]
        lab_ticket = labels[i_ticket]
        customer_index = self.customer_index
        lab_customer = " / ".join(labels[i] for i in customer_index) or "customer"
        fallback = profile.missing_customer
        i_order = idx.get("order_id")

        event_fields = [
            name
            for name in ("event_id", "event_title", "production", "artform", "venue", "hall",
                         "event_start", "event_time", "capacity", "is_free")
            if name in idx
        ]  # fmt: skip
        # Rows are matched to events by event id and start (or, without an event id, by all
        # event columns); the first row of an event supplies its details.
        key_fields = (
            [name for name in ("event_id", "event_start", "event_time") if name in idx]
            if "event_id" in idx
            else event_fields
        )
        event_key = operator.itemgetter(*(idx[name] for name in key_fields))
        event_values = operator.itemgetter(*(idx[name] for name in event_fields))
        events: dict[object, EventInfo | Problem] = {}
        by_key: dict[str, EventInfo] = {}
        conflicts = self.event_conflicts

        def event_of(rec: Sequence[str]) -> EventInfo | Problem:
            raw = event_values(rec)
            found = self._event(raw if isinstance(raw, tuple) else (raw,), event_fields)
            if isinstance(found, EventInfo):
                first = by_key.setdefault(found.key, found)
                if first is not found:
                    if first.details() != found.details():
                        conflicts[found.key] += 1
                    return first
                found.number = self._event_count
                self._event_count += 1
                self.new_events.append(found)
            return found

        def constant(name: str, fallback_value: str) -> str:
            value = profile.defaults.get(name)
            return value if isinstance(value, str) else fallback_value

        i_ordered, i_price = idx.get("ordered_at"), idx.get("price")
        i_ptype, i_channel, i_segment = idx.get("price_type"), idx.get("channel"), idx.get("segment")
        i_status, i_attended, i_postcode = idx.get("status"), idx.get("attended"), idx.get("postcode")
        ptype_const = constant("price_type", UNKNOWN)
        channel_const = constant("channel", UNKNOWN)
        segment_const = constant("segment", UNKNOWN)
        status_const = constant("status", "sold")
        attended_default = profile.defaults.get("attended")
        attended_const = attended_default if isinstance(attended_default, bool) else None
        birth_field = next((n for n in ("birth_date", "birth_year", "age") if n in idx), None)
        i_birth = idx[birth_field] if birth_field else None
        lab = {name: labels[i] for name, i in idx.items()}

        ident_cache: dict[str, str] = {}
        day_cache: dict[str, tuple[str, int] | str] = {}
        time_cache: dict[str, str] = {}
        price_cache: dict[str, int | str] = {}
        ptype_cache: dict[str, str] = {}
        channel_cache: dict[str, str] = {}
        segment_cache: dict[str, str] = {}
        status_cache: dict[str, str] = {}
        attended_cache: dict[str, bool | None | str] = {}
        postcode_cache: dict[str, str | None] = {}
        birth_cache: dict[str, tuple[int, int] | int | str] = {}
        person_of, day_of, time_of = self._person, self._ordered_day, self._ordered_time
        price_of, birth_of = self._price, self._birth
        pseudonym, ticket_ref = self.pseudonym, self.ticket_ref
        unmapped_artform, unmapped_ptype = unmapped["artform"], unmapped["price_type"]
        unmapped_channel, unmapped_segment = unmapped["channel"], unmapped["segment"]
        unmapped_attended = unmapped["attended"]

        def transform(line: int, rec: Sequence[str]) -> Row | Reject:
            if len(rec) != ncols:
                if len(rec) < ncols:
                    rec = [*rec, *([""] * (ncols - len(rec)))]
                elif any(value.strip() for value in rec[ncols:]):
                    return Reject(
                        file_name, line, "",
                        f"the row has {len(rec)} values but the header has {ncols} columns; a "
                        "value probably contains the separator without quotes around it",
                    )  # fmt: skip
            tid = rec[i_ticket].strip()
            if not tid:
                return Reject(file_name, line, lab_ticket, "the ticket id is empty")

            person = ""
            for i in customer_index:
                raw = rec[i]
                cached = ident_cache.get(raw)
                if cached is None:
                    cached = ident_cache[raw] = person_of(raw)
                if cached:
                    person = cached
                    break
            if not person:
                order = rec[i_order].strip() if i_order is not None else ""
                if fallback == "order" and order:
                    person = pseudonym(f"\x00order\x00{source}\x00{order}")
                elif fallback == "ticket":
                    person = pseudonym(f"\x00ticket\x00{source}\x00{tid}")
                else:
                    return Reject(
                        file_name, line, lab_customer,
                        "no customer identifier: the customer column(s) are empty",
                    )  # fmt: skip

            key = event_key(rec)
            event = events.get(key)
            if event is None:
                event = events[key] = event_of(rec)
            if isinstance(event, Problem):
                return Reject(file_name, line, event.column, event.reason)
            if event.unmapped_artform is not None:
                unmapped_artform[event.unmapped_artform] += 1
            day = event.day

            ordered: str | None = None
            lead = UNKNOWN
            if i_ordered is not None:
                raw = rec[i_ordered]
                # Date and time parts are cached apart: many times, few dates.
                space = raw.find(" ")
                head = raw if space < 0 else raw[:space]
                parsed = day_cache.get(head)
                if parsed is None:
                    parsed = day_cache[head] = day_of(head)
                if isinstance(parsed, str):
                    if not parsed and raw.strip():  # leading white space: read it as a whole
                        parsed, space = day_of(raw), -1
                    if isinstance(parsed, str) and parsed:
                        return Reject(file_name, line, lab["ordered_at"], parsed)
                if isinstance(parsed, tuple):
                    if space >= 0:
                        tail = raw[space + 1 :]
                        problem = time_cache.get(tail)
                        if problem is None:
                            problem = time_cache[tail] = time_of(tail) if tail.strip() else ""
                        if problem:
                            return Reject(
                                file_name, line, lab["ordered_at"], f"{raw.strip()!r}: {problem}"
                            )
                    ordered, ordinal = parsed
                    days = event.ordinal - ordinal
                    lead = LEAD_TIME_BANDS[days] if 0 <= days < 400 else lead_time_of(days)

            price = 0
            if i_price is not None:
                raw = rec[i_price]
                cents = price_cache.get(raw)
                if cents is None:
                    cents = price_cache[raw] = price_of(raw)
                if isinstance(cents, str):
                    return Reject(file_name, line, lab["price"], cents)
                price = cents

            status = status_const
            if i_status is not None:
                raw = rec[i_status]
                found = status_cache.get(raw)
                if found is None:
                    found = status_cache[raw] = coded("status", raw)
                if found is _UNMAPPED:
                    return Reject(
                        file_name, line, lab["status"],
                        f"{raw.strip()!r} is not a known status; map it to sold, refunded or "
                        "cancelled in the profile's [values.status]",
                    )  # fmt: skip
                if found is _BAD:
                    return Reject(file_name, line, lab["status"], "the status is empty")
                status = found

            price_type = ptype_const
            if i_ptype is not None:
                raw = rec[i_ptype]
                found = ptype_cache.get(raw)
                if found is None:
                    found = ptype_cache[raw] = coded("price_type", raw)
                if found is _UNMAPPED:
                    unmapped_ptype[raw.strip()] += 1
                    found = UNKNOWN
                price_type = found

            channel = channel_const
            if i_channel is not None:
                raw = rec[i_channel]
                found = channel_cache.get(raw)
                if found is None:
                    found = channel_cache[raw] = coded("channel", raw)
                if found is _UNMAPPED:
                    unmapped_channel[raw.strip()] += 1
                    found = UNKNOWN
                channel = found

            segment = segment_const
            if i_segment is not None:
                raw = rec[i_segment]
                found = segment_cache.get(raw)
                if found is None:
                    found = segment_cache[raw] = coded("segment", raw)
                if found is _UNMAPPED:
                    unmapped_segment[raw.strip()] += 1
                    found = UNKNOWN
                segment = found

            attended = attended_const
            if i_attended is not None:
                raw = rec[i_attended]
                seen = attended_cache.get(raw, _BAD)
                if seen is _BAD:
                    seen = attended_cache[raw] = boolean("attended", raw)
                if seen is _UNMAPPED:
                    unmapped_attended[raw.strip()] += 1
                    seen = None
                attended = seen if seen is None or isinstance(seen, bool) else None

            area: str | None = None
            if i_postcode is not None:
                raw = rec[i_postcode]
                area = postcode_cache.get(raw, _BAD)
                if area is _BAD:
                    area = postcode_cache[raw] = (pc4(raw) or "") if raw.strip() else None
                if not area:
                    stats["postcode_empty" if area is None else "postcode_invalid"] += 1
                    area = None

            age = UNKNOWN
            if i_birth is not None:
                raw = rec[i_birth]
                born = birth_cache.get(raw)
                if born is None:
                    born = birth_cache[raw] = birth_of(birth_field or "", raw)
                if born.__class__ is tuple:
                    # (birth year, month * 100 + day): whole years on the event's date.
                    year, month_day = born  # type: ignore[misc]
                    years = event.year_number - year - (event.month_day < month_day)
                    age = AGE_BANDS[years] if 0 <= years <= 120 else UNKNOWN
                elif born.__class__ is int:
                    age = AGE_BANDS[born] if 0 <= born <= 120 else UNKNOWN  # type: ignore[index,operator]
                elif born:
                    stats["birth_invalid"] += 1

            return (
                line, ticket_ref(tid), person, event.number, ordered, lead, price,
                price_type, channel, status, attended, age, area, segment,
            )  # fmt: skip

        return transform

    # -- what to tell the operator --------------------------------------------------------------

    def warnings(self) -> list[str]:
        """Warnings about values that were read as 'unknown'; they quote only values of
        non-identifying columns (artform, price type, channel, segment, attended)."""
        out = list(self.notes)
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
            shown = ", ".join(f"{value!r} ({count:,})" for value, count in counter.most_common(5))
            more = f" and {len(counter) - 5} other value(s)" if len(counter) > 5 else ""
            counted = "they count as 'unknown'" if field_name != "attended" else "left empty"
            out.append(
                f"{total:,} row(s) had {names[field_name]} value that is not in the profile's "
                f"map: {shown}{more}; {counted}. Add them to [values.{field_name}] to fix this."
            )
        invalid, empty = self.stats["postcode_invalid"], self.stats["postcode_empty"]
        if invalid:
            out.append(
                f"{invalid:,} row(s) had a postcode that is not a Dutch postcode (foreign or "
                "malformed); their PC4 area is unknown."
            )
        if empty and "postcode" in self.index:
            out.append(f"{empty:,} row(s) had no postcode; their PC4 area is unknown.")
        if self.stats["birth_invalid"]:
            out.append(
                f"{self.stats['birth_invalid']:,} row(s) had a birth date, birth year or age "
                "that could not be read; their age band is unknown."
            )
        if self.event_conflicts:
            keys = ", ".join(repr(k) for k, _ in self.event_conflicts.most_common(5))
            out.append(
                f"{len(self.event_conflicts):,} event(s) appear with different details (title, "
                f"start, venue, …) on different rows, e.g. {keys}; the details of the first row "
                "were used for the event."
            )
        return out

