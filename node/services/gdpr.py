"""GDPR access and erasure, by recomputing the pseudonym from the identifier the person gives.

Neither the identifier nor the pseudonym is logged; the request log keeps only the action, the
time, whether anything was found and how many admissions were involved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from node.identity import pseudonym
from node.services import audit
from node.storage.db import transaction
from node.storage.models import Admission, Event, GdprRequest, Person, SectorPseudonym


def _log(session: Session, action: str, found: bool, admissions: int) -> None:
    at = datetime.now(UTC)
    session.add(GdprRequest(action=action, at=at, found=found, admissions=admissions))
    kind = audit.GDPR_ACCESS if action == "access" else audit.GDPR_ERASURE
    audit.append(session, kind, at=at, found=found, admissions=admissions)


def export_person(
    factory: sessionmaker[Session], secret: bytes, identifier: str
) -> dict[str, Any] | None:
    """Everything stored about the person, or None if nothing is stored."""
    key = pseudonym(secret, identifier)
    with transaction(factory) as session:
        person = session.scalar(select(Person).where(Person.pseudonym == key))
        if person is None:
            _log(session, "access", False, 0)
            return None
        rows = session.execute(
            select(Admission, Event.title, Event.event_key)
            .join(Event, Admission.event_id == Event.id)
            .where(Admission.person_id == person.id)
            .order_by(Admission.event_date, Admission.id)
        ).all()
        sector = session.execute(
            select(SectorPseudonym.year, SectorPseudonym.value)
            .where(SectorPseudonym.person_id == person.id)
            .order_by(SectorPseudonym.year)
        ).all()
        _log(session, "access", True, len(rows))
        return {
            "person": {
                "pc4": person.pc4,
                "segment": person.segment,
                "first_seen": person.first_seen.isoformat() if person.first_seen else None,
            },
            "admissions": [
                {
                    "source": adm.source,
                    "event": key_,
                    "event_title": title,
                    "event_date": adm.event_date.isoformat(),
                    "ordered_date": adm.ordered_date.isoformat() if adm.ordered_date else None,
                    "artform": adm.artform,
                    "age_band": adm.age_band,
                    "price_cents": adm.price_cents,
                    "price_type": adm.price_type,
                    "channel": adm.channel,
                    "status": adm.status,
                    "attended": adm.attended,
                }
                for adm, title, key_ in rows
            ],
            # With key holders enrolled: the sector pseudonym per year (docs/explanation/
            # sector-pseudonym.md); never the e-mail address it was derived from.
            "sector_pseudonyms": [{"year": year, "value": value} for year, value in sector],
            "note": (
                "Names, e-mail addresses, phone numbers, street addresses, full postcodes and "
                "birth dates are never stored by this node."
            ),
        }


def forget_person(factory: sessionmaker[Session], secret: bytes, identifier: str) -> int | None:
    """Erase the person and all their admissions. Returns the number of admissions, or None."""
    key = pseudonym(secret, identifier)
    with transaction(factory) as session:
        person_id = session.scalar(select(Person.id).where(Person.pseudonym == key))
        if person_id is None:
            _log(session, "erasure", False, 0)
            return None
        count = (
            session.scalar(
                select(func.count()).select_from(Admission).where(Admission.person_id == person_id)
            )
            or 0
        )
        session.execute(delete(Admission).where(Admission.person_id == person_id))
        session.execute(delete(SectorPseudonym).where(SectorPseudonym.person_id == person_id))
        session.execute(delete(Person).where(Person.id == person_id))
        _log(session, "erasure", True, int(count))
        return int(count)


def count_person(factory: sessionmaker[Session], secret: bytes, identifier: str) -> int | None:
    """How many admissions an erasure would remove (None: nobody found). Not logged: nothing is
    disclosed or changed; the erasure that may follow is."""
    key = pseudonym(secret, identifier)
    with factory() as session:
        person_id = session.scalar(select(Person.id).where(Person.pseudonym == key))
        if person_id is None:
            return None
        return int(
            session.scalar(
                select(func.count()).select_from(Admission).where(Admission.person_id == person_id)
            )
            or 0
        )
