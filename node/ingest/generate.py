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
from datetime import date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Literal

from node.ingest.synthetic import KINDS, Audience, EventPlan, InstitutionKind, Order, PersonInfo

ExportFormat = Literal["generic", "ticketmatic", "eventbrite"]
FORMATS: tuple[ExportFormat, ...] = ("generic", "ticketmatic", "eventbrite")

DIRTY_KINDS: tuple[str, ...] = (
    "bad_order_date",
    "bad_amount",
    "missing_ticket_id",
    "unknown_status",
    "malformed_postcode",
    "missing_customer",
    "bad_event_date",
    "duplicate_ticket",
    "unmapped_price_type",
    "bad_birth_date",
)

TICKET_KEYS = ("ticket_id", "order_id", "ordered_at", "price", "price_type", "channel", "status",
               "attended", "quantity", "currency", "fees", "order_type", "holder")  # fmt: skip
PERSON_KEYS = ("customer_id", "email", "first_name", "last_name", "phone", "street", "postcode",
               "city", "birth_date", "segment")  # fmt: skip
EVENT_KEYS = ("event_id", "event_title", "production", "artform", "venue", "hall", "event_start",
              "event_date", "event_time", "capacity", "is_free")  # fmt: skip
POSITION = {key: i for i, key in enumerate(TICKET_KEYS + PERSON_KEYS + EVENT_KEYS)}
BUFFER_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class Style:
    """How one export format writes its columns and values."""

    delimiter: str
    encoding: str
    eol: str
    columns: tuple[tuple[str, str], ...]
    decimal: str
    date: Callable[[date], str]
    moment: Callable[[datetime], str]
    price_types: dict[str, str]
    channels: dict[str, str]
    statuses: dict[str, str]
    artforms: dict[str, str]
    yes: str = "ja"
    no: str = "nee"


def _dmy(day: date) -> str:
    return f"{day.day:02d}-{day.month:02d}-{day.year:04d}"


def _dmy_hm(moment: datetime) -> str:
    return f"{moment.day:02d}-{moment.month:02d}-{moment.year:04d} {moment:%H:%M}"


def _iso_offset(moment: datetime) -> str:
    offset = "+02:00" if 4 <= moment.month <= 9 else "+01:00"
    return f"{moment:%Y-%m-%d %H:%M:%S}{offset}"


STYLES: dict[str, Style] = {
    "generic": Style(
        delimiter=";", encoding="utf-8-sig", eol="\n", decimal=",", date=_dmy, moment=_dmy_hm,
        columns=tuple((k, k) for k in (
            "ticket_id", "order_id", "customer_id", "email", "first_name", "last_name", "phone",
            "street", "postcode", "city", "birth_date", "event_id", "event_title", "production",
            "artform", "venue", "hall", "event_start", "capacity", "is_free", "ordered_at",
            "price", "price_type", "channel", "status", "attended", "segment")),
        price_types={"regular": "regulier", "reduced": "korting", "youth_cjp": "CJP",
                     "museumkaart": "Museumkaart", "cineville": "Cineville",
                     "uitpas_kansen": "UiTPAS", "member_subscription": "lid",
                     "group_school": "groep", "complimentary": "vrijkaart", "other": "overig"},
        channels={"online": "online", "box_office": "kassa", "phone": "telefoon",
                  "reseller": "voorverkoop", "pass_app": "app"},
        statuses={"sold": "verkocht", "refunded": "geretourneerd", "cancelled": "geannuleerd"},
        artforms={"theatre": "toneel", "musical_opera": "muziektheater", "dance": "dans",
                  "classical_music": "klassiek", "popular_music": "pop", "cabaret": "cabaret",
                  "youth": "jeugd", "film": "film", "visual_arts": "beeldende kunst",
                  "heritage": "erfgoed", "science_nature": "wetenschap",
                  "literature": "literatuur", "multidisciplinary": "festival"},
    ),
    "ticketmatic": Style(
        delimiter=";", encoding="cp1252", eol="\r\n", decimal=",", date=_dmy, moment=_dmy_hm,
        columns=(("ticketid", "ticket_id"), ("orderid", "order_id"),
                 ("customerid", "customer_id"), ("email", "email"),
                 ("firstname", "first_name"), ("lastname", "last_name"), ("phone", "phone"),
                 ("street", "street"), ("zip", "postcode"), ("city", "city"),
                 ("birthdate", "birth_date"), ("eventid", "event_id"),
                 ("eventname", "event_title"), ("productionname", "production"),
                 ("genre", "artform"), ("location", "venue"), ("hall", "hall"),
                 ("eventdate", "event_start"), ("capacity", "capacity"),
                 ("orderdate", "ordered_at"), ("price", "price"), ("pricetype", "price_type"),
                 ("saleschannel", "channel"), ("ticketstatus", "status"),
                 ("scanned", "attended"), ("segment", "segment"), ("ticketholder", "holder")),
        price_types={"regular": "Volbetaald", "reduced": "65+", "youth_cjp": "CJP",
                     "museumkaart": "Museumkaart", "cineville": "Cineville",
                     "uitpas_kansen": "UiTPAS kansentarief", "member_subscription": "Abonnement",
                     "group_school": "Groep", "complimentary": "Vrijkaart", "other": "Overig"},
        channels={"online": "Webshop", "box_office": "Kassa", "phone": "Telefoon",
                  "reseller": "Wederverkoop", "pass_app": "App"},
        statuses={"sold": "Betaald", "refunded": "Terugbetaald", "cancelled": "Geannuleerd"},
        artforms={"theatre": "Toneel", "musical_opera": "Musical", "dance": "Dans",
                  "classical_music": "Klassiek", "popular_music": "Pop", "cabaret": "Cabaret",
                  "youth": "Jeugd", "film": "Film", "visual_arts": "Beeldende kunst",
                  "heritage": "Erfgoed", "science_nature": "Wetenschap",
                  "literature": "Lezing", "multidisciplinary": "Festival"},
    ),
    "eventbrite": Style(
        delimiter=",", encoding="utf-8", eol="\n", decimal=".", date=date.isoformat,
        moment=_iso_offset,
        columns=(("Order #", "order_id"), ("Order Date", "ordered_at"),
                 ("First Name", "first_name"), ("Last Name", "last_name"), ("Email", "email"),
                 ("Quantity", "quantity"), ("Ticket Type", "price_type"),
                 ("Attendee #", "ticket_id"), ("Order Type", "order_type"),
                 ("Currency", "currency"), ("Total Paid", "price"), ("Fees Paid", "fees"),
                 ("Attendee Status", "status"), ("Event Name", "event_title"),
                 ("Event ID", "event_id"), ("Event Start Date", "event_date"),
                 ("Event Start Time", "event_time"), ("Venue Name", "venue"),
                 ("Cell Phone", "phone"), ("Home Address 1", "street"), ("Home City", "city"),
                 ("Zip/Postal Code", "postcode"), ("Date of Birth", "birth_date")),
        price_types={"regular": "General Admission", "reduced": "Early Bird",
                     "youth_cjp": "CJP", "museumkaart": "Museumkaart", "cineville": "Cineville",
                     "uitpas_kansen": "UiTPAS", "member_subscription": "Member",
                     "group_school": "Group", "complimentary": "Free", "other": "Other"},
        channels={},
        statuses={"sold": "Attending", "refunded": "Refunded", "cancelled": "Cancelled"},
        artforms={},
        yes="Checked In",
    ),
}  # fmt: skip

_DEFECTS: dict[str, dict[str, tuple[str, str]]] = {
    # kind -> format -> (part key, bad value); "{y}" is the export's year.
    "bad_order_date": {"generic": ("ordered_at", "31-02-{y} 10:00"),
                       "ticketmatic": ("ordered_at", "31-02-{y} 10:00"),
                       "eventbrite": ("ordered_at", "{y}-02-31 10:00:00+01:00")},
    "bad_amount": {"generic": ("price", "12,5x"), "ticketmatic": ("price", "12,5x"),
                   "eventbrite": ("price", "12.5x")},
    "missing_ticket_id": {f: ("ticket_id", "") for f in FORMATS},
    "unknown_status": {"generic": ("status", "zoekgeraakt"), "ticketmatic": ("status", "Vermist"),
                       "eventbrite": ("status", "Transferred")},
    "malformed_postcode": {f: ("postcode", "12AB 34") for f in FORMATS},
    "bad_event_date": {"generic": ("event_start", "31-13-{y} 20:15"),
                       "ticketmatic": ("event_start", "31-13-{y} 20:15"),
                       "eventbrite": ("event_date", "{y}-13-31")},
    "unmapped_price_type": {f: ("price_type", "Superkorting") for f in FORMATS},
    "bad_birth_date": {"generic": ("birth_date", "31-31-1990"),
                       "ticketmatic": ("birth_date", "31-31-1990"),
                       "eventbrite": ("birth_date", "1990-31-31")},
}  # fmt: skip


def is_reject(kind: str, fmt: ExportFormat) -> bool:
    """Whether the import rejects a dirty row of this kind in this format. A missing customer
    is rejected only in the generic format: the others fall back to the order number."""
    if kind == "missing_customer":
        return fmt == "generic"
    return kind not in ("malformed_postcode", "unmapped_price_type", "bad_birth_date")


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
    report = GenerateReport(path=path, kind=kind, fmt=fmt, rows=rows, seed=seed,
                            events=len(audience.events))  # fmt: skip
    # Dirty rows sit on odd positions at least two apart, so a duplicate always copies a good row.
    picker = random.Random(seed ^ 0xD1127)
    dirty_at = {
        2 * p + 1: DIRTY_KINDS[i % len(DIRTY_KINDS)]
        for i, p in enumerate(sorted(picker.sample(range(1, (rows - 1) // 2), dirty_rows)))
    } if dirty_rows else {}  # fmt: skip
    for defect in dirty_at.values():
        report.dirty[defect] = report.dirty.get(defect, 0) + 1
        report.expected_rejects += is_reject(defect, fmt)

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
            number = {"generic": f"E{event.number:06d}", "ticketmatic": str(10_000 + event.number),
                      "eventbrite": str(800_000_000_000 + event.number * 7919)}[self.fmt]
            parts = [number, _quote(event.title, q), _quote(event.production, q),
                     s.artforms.get(event.artform, event.artform),
                     _quote(self.audience.model.venue, q), _quote(event.hall, q),
                     s.moment(event.start) if self.fmt != "eventbrite" else "",
                     s.date(event.start.date()), f"{event.start:%H:%M}", str(event.capacity),
                     s.yes if event.is_free and self.fmt == "generic" else s.no]  # fmt: skip
            self._events[event.number] = parts
        return parts

    def _person(self, number: int) -> list[str]:
        parts = self._persons.get(number)
        if parts is None:
            info: PersonInfo = self.audience.person(number)
            segment = ""
            if info.segment is not None:
                segment = (f"CDM {info.segment}" if self.fmt == "ticketmatic"
                           else f"cdm_{info.segment:02d}")  # fmt: skip
            parts = [info.customer_number, info.email, info.first_name, info.last_name,
                     info.phone, info.street, info.postcode, info.city,
                     self.style.date(info.birth) if info.birth else "", segment]  # fmt: skip
            if len(self._persons) >= 100_000:
                self._persons.clear()
            self._persons[number] = parts
        return parts

    def ticket_rows(self, order: Order) -> list[list[str]]:
        s, fmt = self.style, self.fmt
        event_parts = self._event(order.event)
        person_parts = self._person(order.person)
        order_no = {"generic": f"O{order.number:07d}", "ticketmatic": str(5_000_000 + order.number),
                    "eventbrite": str(1_000_000_000 + order.number * 13)}[fmt]  # fmt: skip
        price = self._money(order.price_cents)
        fees = self._money(round(order.price_cents * 0.06)) if fmt == "eventbrite" else ""
        order_type = "Free Order" if order.price_cents == 0 else "Eventbrite Completed"
        holder = f"{person_parts[2]} {person_parts[3]}"
        rows = []
        rng = self.audience.rng
        for _ in range(order.tickets):
            self._ticket_number += 1
            number = self._ticket_number
            ticket = {"generic": f"T{number:08d}", "ticketmatic": str(20_000_000 + number),
                      "eventbrite": str(3_000_000_000 + number * 17)}[fmt]  # fmt: skip
            attended = order.status == "sold" and rng.random() < 0.93
            if fmt == "eventbrite":
                status = s.yes if attended else s.statuses[order.status]
                attended_text = ""
            else:
                status = s.statuses[order.status]
                attended_text = s.yes if attended else s.no
            parts = [ticket, order_no, s.moment(order.ordered_at), price,
                     s.price_types[order.price_type], s.channels.get(order.channel, ""), status,
                     attended_text, "1", "EUR", fees, order_type, holder]  # fmt: skip
            rows.append(parts + person_parts + event_parts)
        return rows

    def spoil(self, parts: list[str], defect: str) -> None:
        """Give one row the defect ``defect``."""
        if defect == "missing_customer":
            parts[POSITION["customer_id"]] = parts[POSITION["email"]] = ""
        elif defect == "duplicate_ticket":
            parts[POSITION["ticket_id"]] = self._previous_ticket
        else:
            key, value = _DEFECTS[defect][self.fmt]
            parts[POSITION[key]] = value.format(y=self.year)

    def remember(self, parts: list[str]) -> None:
        self._previous_ticket = parts[POSITION["ticket_id"]]
