"""Events as read from an export: their details and the date fields admissions copy."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, time

from node.ingest.fields import UNKNOWN
from node.ingest.parsing import ValueProblem, integer, period_codes
from node.ingest.values import UNMAPPED, Problem, ValueReader, reason_for

TEXT_LIMIT = 255
KEY_LIMIT = 128
EVENT_FIELDS = (
    "event_id",
    "event_title",
    "production",
    "artform",
    "venue",
    "hall",
    "event_start",
    "event_time",
    "capacity",
    "is_free",
)


class EventInfo:
    """One event of the file, with the derived date fields every admission copies."""

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
        title: str | None = None,
        production: str | None = None,
        artform: str = UNKNOWN,
        venue: str | None = None,
        hall: str | None = None,
        capacity: int | None = None,
        is_free: bool = False,
        unmapped_artform: str | None = None,
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
        self.number = 0  # position in the import's list of events
        # The admission columns copied from the event; set by the writer once the id is known.
        self.columns: tuple[object, ...] = ()

    def details(self) -> tuple[object, ...]:
        """The values stored in the event table, in the order of ``DETAIL_COLUMNS``."""
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


DETAIL_COLUMNS = (
    "title",
    "production",
    "artform",
    "venue",
    "hall",
    "starts_at",
    "capacity",
    "is_free",
)


def read_event(
    reader: ValueReader, fields: Sequence[str], raw: Sequence[str]
) -> EventInfo | Problem:
    """The event described by the raw values of ``fields``, or why its rows are rejected."""
    values = dict(zip(fields, raw, strict=True))
    defaults, label, dates = reader.profile.defaults, reader.columns.label, reader.dates

    def text(name: str) -> str | None:
        value = (values.get(name) or "").strip()
        if not value:
            default = defaults.get(name)
            return default if isinstance(default, str) else None
        return value[:TEXT_LIMIT]

    start_raw = values["event_start"]
    if not start_raw.strip():
        return Problem(label("event_start"), "the event's start date is empty")
    head, tail = dates.split(start_raw)
    try:
        day = dates.read_date(head)
    except ValueProblem as problem:
        return Problem(label("event_start"), f"{start_raw.strip()!r} {problem}")
    separate_time = (values.get("event_time") or "").strip()
    column = "event_time" if separate_time else "event_start"
    moment = time(0, 0)
    if separate_time or tail:
        try:
            moment = dates.read_time(separate_time or tail)
        except ValueProblem as problem:
            return Problem(label(column), f"{values[column].strip()!r} {problem}")
    starts_at = datetime.combine(day, moment.replace(tzinfo=None))

    title, venue, hall = text("event_title"), text("venue"), text("hall")
    if "event_id" in values:
        key = values["event_id"].strip()
        if not key:
            return Problem(label("event_id"), "the event id is empty")
        if len(key) > KEY_LIMIT:
            return Problem(label("event_id"), f"the event id is longer than {KEY_LIMIT}")
    else:
        basis = "\x00".join((starts_at.isoformat(), title or "", venue or "", hall or ""))
        key = "auto-" + hashlib.sha256(basis.encode()).hexdigest()[:32]

    unmapped_artform = None
    artform = reader.coded("artform", values.get("artform", ""))
    if artform is UNMAPPED:
        unmapped_artform, artform = values["artform"].strip(), UNKNOWN

    capacity = defaults.get("capacity")
    if (values.get("capacity") or "").strip():
        try:
            capacity = integer(values["capacity"])
        except ValueProblem as problem:
            return Problem(label("capacity"), reason_for("capacity", values["capacity"], problem))

    free = reader.boolean("is_free", values.get("is_free", ""))
    if free is UNMAPPED:
        return Problem(
            label("is_free"),
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
        capacity=capacity if isinstance(capacity, int) and not isinstance(capacity, bool) else None,
        is_free=bool(free),
        unmapped_artform=unmapped_artform,
    )
