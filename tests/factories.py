"""Factories that write canonical rows straight into a node database (bypassing import)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, insert

from node.identity import sample_key
from node.storage.models import Admission, Event, GeoPc4, ImportBatch, Person
from protocol.catalogue import WEEKDAY_CODES


@dataclass(frozen=True)
class Row:
    """One admission with the person's attributes, in catalogue codes."""

    person: int
    event_date: date
    artform: str = "theatre"
    age_band: str = "30_44"
    price_cents: int = 2500
    price_type: str = "regular"
    channel: str = "online"
    lead_time: str = "7_29"
    status: str = "sold"
    pc4: str | None = "3511"
    segment: str = "unknown"
    first_seen: date | None = None


def factory_ref(i: int) -> str:
    """A ticket reference that looks like the HMAC the importer stores (pseudo-random hex)."""
    return hashlib.sha256(f"ticket-{i}".encode()).hexdigest()[:32]


def write_rows(
    engine: Engine,
    rows: list[Row],
    geo: dict[str, tuple[str, str]] | None = None,
    *,
    ref_offset: int = 0,
) -> None:
    """Row i gets the ticket reference factory_ref(ref_offset + i), so that rows written to
    several databases can be pooled into one with the same references."""
    persons: dict[int, Row] = {}
    for row in rows:
        persons.setdefault(row.person, row)
    events = sorted({(r.event_date, r.artform) for r in rows})
    event_ids = {key: i + 1 for i, key in enumerate(events)}
    with engine.begin() as conn:
        conn.execute(
            insert(ImportBatch),
            [
                {
                    "id": 1,
                    "source": "test",
                    "profile": "test",
                    "file_name": "factory",
                    "file_sha256": "0" * 64,
                    "imported_at": datetime.now(UTC),
                    "rows_read": len(rows),
                    "rows_inserted": len(rows),
                    "rows_updated": 0,
                    "rows_unchanged": 0,
                    "rows_rejected": 0,
                }
            ],
        )
        if persons:
            conn.execute(
                insert(Person),
                [
                    {
                        "id": pid,
                        "pseudonym": f"{pid:064x}",
                        "pc4": r.pc4,
                        "segment": r.segment,
                        "first_seen": r.first_seen,
                    }
                    for pid, r in persons.items()
                ],
            )
        if events:
            conn.execute(
                insert(Event),
                [
                    {
                        "id": eid,
                        "source": "test",
                        "event_key": f"e{eid}",
                        "artform": art,
                        "starts_at": datetime.combine(day, datetime.min.time())
                        + timedelta(hours=20),
                        "is_free": False,
                    }
                    for (day, art), eid in event_ids.items()
                ],
            )
        if rows:
            conn.execute(
                insert(Admission),
                [
                    {
                        "source": "test",
                        "ticket_ref": factory_ref(ref_offset + i),
                        "sample_key": sample_key(factory_ref(ref_offset + i)),
                        "person_id": r.person,
                        "event_id": event_ids[(r.event_date, r.artform)],
                        "batch_id": 1,
                        "event_date": r.event_date,
                        "event_month": f"{r.event_date:%Y-%m}",
                        "event_quarter": f"{r.event_date.year}-Q{(r.event_date.month + 2) // 3}",
                        "event_year": f"{r.event_date.year}",
                        "weekday": WEEKDAY_CODES[r.event_date.weekday()],
                        "artform": r.artform,
                        "ordered_date": r.event_date,
                        "lead_time": r.lead_time,
                        "price_cents": r.price_cents,
                        "price_type": r.price_type,
                        "channel": r.channel,
                        "status": r.status,
                        "attended": None,
                        "age_band": r.age_band,
                    }
                    for i, r in enumerate(rows)
                ],
            )
        if geo:
            conn.execute(
                insert(GeoPc4),
                [{"pc4": k, "municipality_code": m, "province": p} for k, (m, p) in geo.items()],
            )
