"""Turning one source record into one canonical admission row, or a reject.

:class:`RowCompiler` resolves the profile's columns against the file's header once, then builds a
single function that converts a record. That function is the hot loop of the import, so it is
written for speed: plain tuples, caches from raw text to parsed value (an export of a million rows
holds a few hundred distinct prices and dates, a few thousand combinations of price, price type,
channel and status), and identifiers hashed once per distinct value. Identifying values (customer
ids, e-mail addresses, postcodes, birth dates) live only in those in-memory caches and are never
part of a row, a reject or a warning.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import date

from node.ingest.columns import Columns, resolve_columns
from node.ingest.errors import UnreadableFile
from node.ingest.events import EVENT_FIELDS, EventInfo, read_event
from node.ingest.fields import UNKNOWN
from node.ingest.keys import ticket_ref_function
from node.ingest.parsing import AGE_BANDS, EARLIEST_BIRTH_YEAR, LEAD_TIME_BANDS, lead_time_of, pc4
from node.ingest.profile import Profile
from node.ingest.reader import CutRecord
from node.ingest.report import Reject
from node.ingest.values import (
    BAD,
    IMPLAUSIBLE,
    TICKET_FIELDS,
    UNMAPPED,
    Problem,
    TicketValues,
    ValueReader,
)
from protocol.sector import normalise

# A parsed row: (line, ticket_ref, person pseudonym, event number, order date as ISO text,
# lead-time band, price in cents, price type, channel, status, attended, age band, PC4, segment).
# Only plain values, so that chunks of rows travel cheaply between processes.
Row = tuple[
    int, str, str, int, str | None, str, int, str, str, str, bool | None, str, str | None, str
]
Transform = Callable[[int, Sequence[str]], "Row | Reject"]

__all__ = ["EventInfo", "Row", "RowCompiler", "Transform"]


def _getter(positions: Sequence[int]) -> Callable[[Sequence[str]], object]:
    """The values at ``positions`` of a record, as a hashable key (a constant if none)."""
    if not positions:
        return lambda record: ()
    return operator.itemgetter(*positions)


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
        separator: str | None = None,
        sector: bool = False,
    ) -> None:
        self.profile = profile
        self.source = source
        self.file_name = file_name
        self.ncols = len(header)
        self.separator = separator  # as shown to the operator; None for a workbook
        self.columns: Columns = resolve_columns(profile, header, labels, file_name)
        self.values = ValueReader(profile, self.columns, secret, today)
        self.ticket_ref = ticket_ref_function(secret, source)
        self.new_events: list[EventInfo] = []
        self._event_count = 0
        # With sector pseudonymisation on: local pseudonym -> normalised identifier, in memory
        # only (node/ingest/sector.py turns it into sector values; it is never stored).
        self.sector_ids: dict[str, str] | None = None
        if sector:
            if self.columns.sector is None:
                raise UnreadableFile(
                    f"{file_name}: the node is enrolled with key holders, but this file has no "
                    "column for the sector pseudonym (an e-mail column among the profile's "
                    "customer columns, or the one named by [format] sector_identifier)"
                )
            self.sector_ids = {}

    def label(self, field_name: str) -> str:
        return self.columns.label(field_name)

    def take_new_events(self) -> list[EventInfo]:
        """The events first seen since the last call, in the order of their numbers."""
        taken, self.new_events = self.new_events, []
        return taken

    def warnings(self) -> list[str]:
        return self.values.warnings()

    def _event_name(self, event: EventInfo) -> str:
        """An event as the operator finds it in the file: by its id, or (without an id column)
        by title and start, each with its column's name."""
        idx = self.columns.index
        if "event_id" in idx:
            return f"{self.label('event_id')} {event.key!r}"
        parts = [f"{self.label('event_start')} {event.starts_at:%d-%m-%Y %H:%M}"]
        if "event_title" in idx and event.title:
            parts.insert(0, f"{self.label('event_title')} {event.title!r}")
        return " on ".join(parts) if len(parts) > 1 else parts[0]

    def _event_lookup(
        self,
    ) -> tuple[Callable[[Sequence[str]], object], Callable[[Sequence[str]], EventInfo | Problem]]:
        """(key of a record's event, function from a record to its EventInfo or Problem).

        Rows are matched to events by event id and start (without an event id: by all event
        columns); the first row of an event supplies its details."""
        idx, reader = self.columns.index, self.values
        fields = [name for name in EVENT_FIELDS if name in idx]
        key_fields = (
            [name for name in ("event_id", "event_start", "event_time") if name in idx]
            if "event_id" in idx
            else fields
        )
        values_of = _getter([idx[name] for name in fields])
        by_key: dict[str, EventInfo] = {}

        def event_of(rec: Sequence[str]) -> EventInfo | Problem:
            raw = values_of(rec)
            found = read_event(reader, fields, raw if isinstance(raw, tuple) else (raw,))
            if isinstance(found, EventInfo):
                first = by_key.setdefault(found.key, found)
                if first is not found:
                    reader.event_conflicts[self._event_name(first)] += 1
                    return first
                found.number = self._event_count
                self._event_count += 1
                self.new_events.append(found)
            return found

        return _getter([idx[name] for name in key_fields]), event_of

    def compile(self) -> Transform:
        """The function that turns (line, record) into a Row or a Reject."""
        idx, labels, reader = self.columns.index, self.columns.labels, self.values
        file_name, ncols, source = self.file_name, self.ncols, self.source
        width_problem = self.width_problem
        stats, unmapped = reader.stats, reader.unmapped
        i_ticket = idx["ticket_id"]
        lab_ticket = labels[i_ticket]
        customer_index = self.columns.customer
        lab_customer = " / ".join(labels[i] for i in customer_index) or "customer"
        fallback = self.profile.missing_customer
        sector_ids, i_sector = self.sector_ids, self.columns.sector
        sector_kind = self.profile.sector_kind
        i_order = idx.get("order_id")
        event_key, event_of = self._event_lookup()
        i_ordered = idx.get("ordered_at")
        lab_ordered = labels[i_ordered] if i_ordered is not None else ""
        ticket_fields = [n for n in TICKET_FIELDS if n in idx]
        ticket_key = _getter([idx[n] for n in ticket_fields])
        i_postcode, i_segment = idx.get("postcode"), idx.get("segment")
        segment_default = self.profile.defaults.get("segment")
        segment_const = segment_default if isinstance(segment_default, str) else UNKNOWN
        birth_field = next((n for n in ("birth_date", "birth_year", "age") if n in idx), "")
        i_birth = idx[birth_field] if birth_field else None

        ident_cache: dict[str, str] = {}
        events: dict[object, EventInfo | Problem] = {}
        day_cache: dict[str, tuple[str, int] | str] = {}
        time_cache: dict[str, str] = {}
        ticket_cache: dict[object, TicketValues | Problem] = {}
        postcode_cache: dict[str, str | None] = {}
        birth_cache: dict[str, tuple[int, int] | int | str] = {}
        segment_cache: dict[str, str] = {}
        person_of, day_of, time_of = reader.person, reader.ordered_day, reader.ordered_time
        ticket_of, coded, birth_of = reader.ticket, reader.coded, reader.birth
        pseudonym, ticket_ref = reader.pseudonym, self.ticket_ref
        unmapped_artform, unmapped_segment = unmapped["artform"], unmapped["segment"]

        def transform(line: int, rec: Sequence[str]) -> Row | Reject:
            if len(rec) != ncols or rec.__class__ is CutRecord:
                return Reject(file_name, line, "", width_problem(rec))
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
            if person and sector_ids is not None and person not in sector_ids:
                identifier = normalise(rec[i_sector], sector_kind)  # type: ignore[index]
                if identifier is not None:
                    sector_ids[person] = identifier
            if not person:
                order = rec[i_order].strip() if i_order is not None else ""
                if fallback == "order" and order:
                    person = pseudonym(f"\x00order\x00{source}\x00{order}")
                elif fallback == "ticket":
                    person = pseudonym(f"\x00ticket\x00{source}\x00{tid}")
                else:
                    return Reject(
                        file_name,
                        line,
                        lab_customer,
                        "no customer identifier: the customer column(s) are empty",
                    )

            key = event_key(rec)
            event = events.get(key)
            if event is None:
                event = events[key] = event_of(rec)
            if isinstance(event, Problem):
                return Reject(file_name, line, event.column, event.reason)
            if event.unmapped_artform is not None:
                unmapped_artform[event.unmapped_artform] += 1

            # Price, status, price type, channel and attended: few distinct combinations.
            key = ticket_key(rec)
            ticket = ticket_cache.get(key)
            if ticket is None:
                ticket = ticket_cache[key] = ticket_of(ticket_fields, key)
            if isinstance(ticket, Problem):
                return Reject(file_name, line, ticket.column, ticket.reason)
            price, status, price_type, channel, attended, notes = ticket
            if notes:
                for counter, value in notes:
                    counter[value] += 1

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
                        return Reject(file_name, line, lab_ordered, parsed)
                if isinstance(parsed, tuple):
                    if space >= 0:
                        tail = raw[space + 1 :]
                        problem = time_cache.get(tail)
                        if problem is None:
                            problem = time_cache[tail] = time_of(tail) if tail.strip() else ""
                        if problem:
                            return Reject(
                                file_name, line, lab_ordered, f"{raw.strip()!r}: {problem}"
                            )
                    ordered, ordinal = parsed
                    days = event.ordinal - ordinal
                    lead = LEAD_TIME_BANDS[days] if 0 <= days < 400 else lead_time_of(days)

            area: str | None = None
            if i_postcode is not None:
                raw = rec[i_postcode]
                area = postcode_cache.get(raw, BAD)
                if area is BAD:
                    area = postcode_cache[raw] = (pc4(raw) or "") if raw.strip() else None
                if not area:
                    stats["postcode_empty" if area is None else "postcode_invalid"] += 1
                    area = None

            age = UNKNOWN
            if i_birth is not None:
                raw = rec[i_birth]
                born = birth_cache.get(raw)
                if born is None:
                    born = birth_cache[raw] = birth_of(birth_field, raw)
                if born.__class__ is tuple:
                    # (birth year, month * 100 + day): whole years on the event's date. Born
                    # before 1900, after the event or over 120 years before it: implausible,
                    # so unknown (and counted).
                    years = event.year_number - born[0] - (event.month_day < born[1])
                    if 0 <= years <= 120 and born[0] >= EARLIEST_BIRTH_YEAR:
                        age = AGE_BANDS[years]
                    else:
                        stats["birth_implausible"] += 1
                elif born.__class__ is int:
                    if born <= 120:
                        age = AGE_BANDS[born]
                    else:
                        stats["birth_implausible"] += 1
                elif born:
                    stats["birth_implausible" if born is IMPLAUSIBLE else "birth_invalid"] += 1

            segment = segment_const
            if i_segment is not None:
                raw = rec[i_segment]
                found = segment_cache.get(raw)
                if found is None:
                    found = segment_cache[raw] = coded("segment", raw)
                if found is UNMAPPED:
                    unmapped_segment[raw.strip()] += 1
                    found = UNKNOWN
                segment = found

            return (
                line,
                ticket_ref(tid),
                person,
                event.number,
                ordered,
                lead,
                price,
                price_type,
                channel,
                status,
                attended,
                age,
                area,
                segment,
            )

        return transform

    def width_problem(self, rec: Sequence[str]) -> str:
        """Why a record that is cut off, or has too few or too many fields, is rejected."""
        if isinstance(rec, CutRecord):
            return (
                'the file ends inside this row: a quote (") opened here is never closed, so the '
                "file is probably cut off. Export the file again, complete."
            )
        found = f"expected {self.ncols} fields (as in the header), found {len(rec)}"
        if len(rec) > self.ncols and self.separator is None:
            return f"{found}; a cell right of the last named column holds a value"
        if len(rec) > self.ncols:
            reason = (
                f"{found}; a value probably contains the separator ({self.separator}) without "
                "quotes around it"
            )
            if not any(value.strip() for value in rec[self.ncols :]):
                reason += (
                    f" (or, if every row ends with an extra {self.separator}, the header line "
                    "lacks one)"
                )
            return reason
        return (
            f"{found}; the row is incomplete (the file may be cut off, or a value contains a "
            "line break without quotes around it)"
        )
