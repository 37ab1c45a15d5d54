"""The canonical fields an import profile can map, and what kind of value each one holds.

The import reads only the columns a profile maps to one of these fields; every other column of the
export (names, phone numbers, street addresses, …) is never read at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.catalogue import DIMENSIONS, UNKNOWN

STATUS_CODES: tuple[str, ...] = ("sold", "refunded", "cancelled")


class Kind(StrEnum):
    IDENTIFIER = "identifier"  # used in memory only (hashed, or reduced to PC4 / age band)
    KEY = "key"  # an opaque, non-personal key (event id)
    TEXT = "text"
    CODE = "code"  # mapped to a catalogue code through the profile's value map
    DATETIME = "datetime"
    DATE = "date"
    TIME = "time"
    INTEGER = "integer"
    YEAR = "year"
    BOOLEAN = "boolean"
    AMOUNT = "amount"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    help: str
    identifying: bool = False
    codes: tuple[str, ...] = ()
    defaultable: bool = False


def _codes(dimension: str) -> tuple[str, ...]:
    return DIMENSIONS[dimension].codes


_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("ticket_id", Kind.IDENTIFIER, "unique id of the ticket or visit", identifying=True),
    FieldSpec(
        "order_id", Kind.IDENTIFIER, "id of the order the ticket belongs to", identifying=True
    ),
    FieldSpec(
        "customer",
        Kind.IDENTIFIER,
        "customer identifier column(s), in priority order",
        identifying=True,
    ),
    FieldSpec("event_id", Kind.KEY, "id of the event (performance, screening, time slot)"),
    FieldSpec("event_title", Kind.TEXT, "title of the event"),
    FieldSpec("production", Kind.TEXT, "production, exhibition or film", defaultable=True),
    FieldSpec(
        "artform", Kind.CODE, "artform of the event", codes=_codes("artform"), defaultable=True
    ),
    FieldSpec("venue", Kind.TEXT, "venue or location", defaultable=True),
    FieldSpec("hall", Kind.TEXT, "hall or room", defaultable=True),
    FieldSpec("event_start", Kind.DATETIME, "date (and time) the event starts"),
    FieldSpec("event_time", Kind.TIME, "start time, when the export has it in its own column"),
    FieldSpec("capacity", Kind.INTEGER, "number of places of the event", defaultable=True),
    FieldSpec("is_free", Kind.BOOLEAN, "whether the event is free of charge", defaultable=True),
    FieldSpec("ordered_at", Kind.DATETIME, "date (and time) the ticket was ordered"),
    FieldSpec("price", Kind.AMOUNT, "price paid for the ticket"),
    FieldSpec(
        "price_type",
        Kind.CODE,
        "price type or discount",
        codes=_codes("price_type"),
        defaultable=True,
    ),
    FieldSpec("channel", Kind.CODE, "sales channel", codes=_codes("channel"), defaultable=True),
    FieldSpec(
        "status", Kind.CODE, "sold, refunded or cancelled", codes=STATUS_CODES, defaultable=True
    ),
    FieldSpec(
        "attended", Kind.BOOLEAN, "whether the ticket was scanned at the door", defaultable=True
    ),
    FieldSpec(
        "postcode", Kind.IDENTIFIER, "postcode of the customer (reduced to PC4)", identifying=True
    ),
    FieldSpec(
        "birth_date",
        Kind.DATE,
        "birth date of the customer (reduced to an age band)",
        identifying=True,
    ),
    FieldSpec(
        "birth_year",
        Kind.YEAR,
        "birth year of the customer (reduced to an age band)",
        identifying=True,
    ),
    FieldSpec(
        "age",
        Kind.INTEGER,
        "age of the customer in years (reduced to an age band)",
        identifying=True,
    ),
    FieldSpec(
        "segment",
        Kind.CODE,
        "audience segment (Culturele Doelgroepenmodel)",
        codes=_codes("segment"),
        defaultable=True,
    ),
)

FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _SPECS}

REQUIRED_FIELDS: tuple[str, ...] = ("ticket_id", "event_start")

# Fields whose source values a profile may translate with a [values.<field>] table.
VALUE_MAP_FIELDS: tuple[str, ...] = (
    "artform",
    "price_type",
    "channel",
    "status",
    "segment",
    "attended",
    "is_free",
)


TRUE_WORDS = frozenset({"1", "true", "yes", "y", "ja", "j", "waar", "x"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "nee", "onwaar"})

__all__ = [
    "FALSE_WORDS",
    "FIELDS",
    "REQUIRED_FIELDS",
    "STATUS_CODES",
    "TRUE_WORDS",
    "UNKNOWN",
    "VALUE_MAP_FIELDS",
    "FieldSpec",
    "Kind",
]
