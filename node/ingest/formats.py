"""The three export formats the generator writes: columns, value spellings and dirty rows.

Each :class:`Style` says how one shipped profile's export looks (delimiter, encoding, line ends,
column names, how dates, prices and codes are written), so that the generated files exercise the
same paths real exports do. :data:`DEFECTS` lists how each kind of dirty row is spoiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

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

TICKET_KEYS = (
    "ticket_id",
    "order_id",
    "ordered_at",
    "price",
    "price_type",
    "channel",
    "status",
    "attended",
    "quantity",
    "currency",
    "fees",
    "order_type",
    "holder",
)
PERSON_KEYS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "street",
    "postcode",
    "city",
    "birth_date",
    "segment",
)
EVENT_KEYS = (
    "event_id",
    "event_title",
    "production",
    "artform",
    "venue",
    "hall",
    "event_start",
    "event_date",
    "event_time",
    "capacity",
    "is_free",
)
POSITION = {key: i for i, key in enumerate(TICKET_KEYS + PERSON_KEYS + EVENT_KEYS)}


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
    # How the system numbers events, orders and tickets (from a running number).
    event_id: Callable[[int], str] = "E{:06d}".format
    order_id: Callable[[int], str] = "O{:07d}".format
    ticket_id: Callable[[int], str] = "T{:08d}".format


def _dmy(day: date) -> str:
    return f"{day.day:02d}-{day.month:02d}-{day.year:04d}"


def _dmy_hm(moment: datetime) -> str:
    return f"{moment.day:02d}-{moment.month:02d}-{moment.year:04d} {moment:%H:%M}"


def _iso_offset(moment: datetime) -> str:
    offset = "+02:00" if 4 <= moment.month <= 9 else "+01:00"
    return f"{moment:%Y-%m-%d %H:%M:%S}{offset}"


# fmt: off
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
        event_id=lambda n: str(10_000 + n),
        order_id=lambda n: str(5_000_000 + n),
        ticket_id=lambda n: str(20_000_000 + n),
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
        event_id=lambda n: str(800_000_000_000 + n * 7919),
        order_id=lambda n: str(1_000_000_000 + n * 13),
        ticket_id=lambda n: str(3_000_000_000 + n * 17),
        artforms={},
        yes="Checked In",
    ),
}

DEFECTS: dict[str, dict[str, tuple[str, str]]] = {
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
}


# fmt: on


def is_reject(kind: str, fmt: ExportFormat) -> bool:
    """Whether the import rejects a dirty row of this kind in this format. A missing customer
    is rejected only in the generic format: the others fall back to the order number."""
    if kind == "missing_customer":
        return fmt == "generic"
    return kind not in ("malformed_postcode", "unmapped_price_type", "bad_birth_date")
