"""Writing realistic, made-up exports in the format of each shipped profile.

``generate_export`` streams a synthetic audience (see :mod:`node.ingest.synthetic`) into a CSV
file as the ``generic``, ``ticketmatic``-style or ``eventbrite``-style export would hold it,
including columns the import must drop (names, phone numbers, streets), so tests and benchmarks
exercise the real paths. The same arguments always give a byte-identical file.

``dirty_rows=k`` turns k rows into bad rows of the kinds in :data:`DIRTY_KINDS`, taken in turn.
Which kinds the import rejects is in :func:`is_reject`; the others are read with an 'unknown'
value (a malformed postcode, an unmapped price type, an unreadable birth date).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

from node.ingest.formats import (
    DEFECTS,
    DIRTY_KINDS,
    FORMATS,
    POSITION,
    STYLES,
    ExportFormat,
    Style,
    is_reject,
)
from node.ingest.synthetic import KINDS, Audience, EventPlan, InstitutionKind, Order, PersonInfo

BUFFER_ROWS = 5_000

__all__ = [
    "DIRTY_KINDS",
    "FORMATS",
    "ExportFormat",
    "GenerateReport",
    "generate_export",
    "is_reject",
]


@dataclass(slots=True)
class GenerateReport:
    path: Path
    kind: str
    fmt: str
    rows: int
    seed: int
    events: int = 0
    persons: int = 0
    dirty: dict[str, int] = field(default_factory=dict)
    expected_rejects: int = 0
    sha256: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        dirty = sum(self.dirty.values())
        text = f"{self.rows:,} rows, {self.events:,} events, {self.persons:,} customers"
        if dirty:
            text += f", {dirty:,} dirty rows of which {self.expected_rejects:,} will be rejected"
        return f"{text}; {self.kind}, {self.fmt} format, seed {self.seed}"


def generate_export(
    path: Path,
    *,
    kind: InstitutionKind,
    rows: int,
    seed: int,
    year: int = 2025,
    fmt: ExportFormat = "generic",
    dirty_rows: int = 0,
    progress: Callable[[int, int | None], None] | None = None,
) -> GenerateReport:
    """Write a made-up export of ``rows`` tickets for one institution of type ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if fmt not in STYLES:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if rows < 1:
        raise ValueError("rows must be at least 1")
    if not 0 <= dirty_rows <= rows // 3:
        raise ValueError("dirty_rows must be between 0 and a third of rows")
    started = time.perf_counter()
    style = STYLES[fmt]
    audience = Audience(kind, rows, seed, year)
    report = GenerateReport(
        path=path, kind=kind, fmt=fmt, rows=rows, seed=seed, events=len(audience.events)
    )
    # Dirty rows sit on odd positions at least two apart, so a duplicate always copies a good row.
    picker = random.Random(seed ^ 0xD1127)
    dirty_at = (
        {
            2 * p + 1: DIRTY_KINDS[i % len(DIRTY_KINDS)]
            for i, p in enumerate(sorted(picker.sample(range(1, (rows - 1) // 2), dirty_rows)))
        }
        if dirty_rows
        else {}
    )
    for kind_of_defect in dirty_at.values():
        report.dirty[kind_of_defect] = report.dirty.get(kind_of_defect, 0) + 1
        report.expected_rejects += is_reject(kind_of_defect, fmt)

    writer = _RowWriter(style, audience, fmt, year)
    seen = bytearray(audience.pool)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=style.encoding, newline="") as handle:
        handle.write(style.delimiter.join(name for name, _ in style.columns) + style.eol)
        buffer: list[str] = []
        index = 0
        for order in audience.orders():
            seen[order.person] = 1
            for parts in writer.ticket_rows(order):
                defect = dirty_at.get(index)
                if defect is not None:
                    writer.spoil(parts, defect)
                buffer.append(writer.line(parts))
                writer.remember(parts)
                index += 1
            if len(buffer) >= BUFFER_ROWS:
                handle.write("".join(buffer))
                buffer.clear()
                if progress is not None:
                    progress(index, rows)
        handle.write("".join(buffer))
    if progress is not None:
        progress(index, rows)
    report.persons = sum(seen)
    report.sha256 = _sha256(path)
    report.seconds = time.perf_counter() - started
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _quote(text: str, delimiter: str) -> str:
    if delimiter in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


class _RowWriter:
    """Turns orders into the text rows of one export format."""

    def __init__(self, style: Style, audience: Audience, fmt: ExportFormat, year: int) -> None:
        self.style = style
        self.audience = audience
        self.fmt = fmt
        self.year = year
        self.getter = itemgetter(*(POSITION[key] for _, key in style.columns))
        self._events: dict[int, list[str]] = {}
        self._persons: dict[int, list[str]] = {}
        self._previous_ticket = ""
        self._ticket_number = 0

    def line(self, parts: list[str]) -> str:
        return self.style.delimiter.join(self.getter(parts)) + self.style.eol

    def _money(self, cents: int) -> str:
        return f"{cents // 100}{self.style.decimal}{cents % 100:02d}"

    def _event(self, event: EventPlan) -> list[str]:
        parts = self._events.get(event.number)
        if parts is None:
            s, q = self.style, self.style.delimiter
            parts = [
                s.event_id(event.number),
                _quote(event.title, q),
                _quote(event.production, q),
                s.artforms.get(event.artform, event.artform),
                _quote(self.audience.model.venue, q),
                _quote(event.hall, q),
                s.moment(event.start) if self.fmt != "eventbrite" else "",
                s.date(event.start.date()),
                f"{event.start:%H:%M}",
                str(event.capacity),
                s.yes if event.is_free and self.fmt == "generic" else s.no,
            ]
            self._events[event.number] = parts
        return parts

    def _person(self, number: int) -> list[str]:
        parts = self._persons.get(number)
        if parts is None:
            info: PersonInfo = self.audience.person(number)
            segment = ""
            if info.segment is not None:
                segment = (
                    f"CDM {info.segment}"
                    if self.fmt == "ticketmatic"
                    else f"cdm_{info.segment:02d}"
                )
            parts = [
                info.customer_number,
                info.email,
                info.first_name,
                info.last_name,
                info.phone,
                info.street,
                info.postcode,
                info.city,
                self.style.date(info.birth) if info.birth else "",
                segment,
            ]
            if len(self._persons) >= 100_000:
                self._persons.clear()
            self._persons[number] = parts
        return parts

    def ticket_rows(self, order: Order) -> list[list[str]]:
        s, fmt = self.style, self.fmt
        event_parts = self._event(order.event)
        person_parts = self._person(order.person)
        order_no = s.order_id(order.number)
        ordered_at = s.moment(order.ordered_at)
        price = self._money(order.price_cents)
        fees = self._money(round(order.price_cents * 0.06)) if fmt == "eventbrite" else ""
        order_type = "Free Order" if order.price_cents == 0 else "Eventbrite Completed"
        holder = f"{person_parts[2]} {person_parts[3]}"
        rows = []
        rng = self.audience.rng
        for _ in range(order.tickets):
            self._ticket_number += 1
            ticket = s.ticket_id(self._ticket_number)
            attended = order.status == "sold" and rng.random() < 0.93
            if fmt == "eventbrite":
                status = s.yes if attended else s.statuses[order.status]
                attended_text = ""
            else:
                status = s.statuses[order.status]
                attended_text = s.yes if attended else s.no
            parts = [
                ticket,
                order_no,
                ordered_at,
                price,
                s.price_types[order.price_type],
                s.channels.get(order.channel, ""),
                status,
                attended_text,
                "1",
                "EUR",
                fees,
                order_type,
                holder,
            ]
            rows.append(parts + person_parts + event_parts)
        return rows

    def spoil(self, parts: list[str], defect: str) -> None:
        """Give one row the defect ``defect``."""
        if defect == "missing_customer":
            parts[POSITION["customer_id"]] = parts[POSITION["email"]] = ""
        elif defect == "duplicate_ticket":
            parts[POSITION["ticket_id"]] = self._previous_ticket
        else:
            key, value = DEFECTS[defect][self.fmt]
            parts[POSITION[key]] = value.format(y=self.year)

    def remember(self, parts: list[str]) -> None:
        self._previous_ticket = parts[POSITION["ticket_id"]]
