"""Retention: delete admissions whose event is older than ``retention_days``, and the persons
left without any admission. Runs at start-up and then daily while the node serves, and on
demand with ``publieksdata node retention``. Each run that deletes something is in the audit log
(the counts and the cut-off date, nothing else).

The budget ledger and the audit log are kept: they record what left the node, not audience data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from node.services import audit
from node.storage.db import transaction
from node.storage.models import Admission, Person


@dataclass(frozen=True, slots=True)
class RetentionRun:
    cutoff: date
    admissions: int
    persons: int


def cutoff_for(days: int, today: date | None = None) -> date:
    return (today or datetime.now(UTC).date()) - timedelta(days=days)


def apply_retention(
    factory: sessionmaker[Session], days: int, today: date | None = None
) -> RetentionRun:
    cutoff = cutoff_for(days, today)
    with transaction(factory) as session:
        admissions = int(
            session.scalar(
                select(func.count()).select_from(Admission).where(Admission.event_date < cutoff)
            )
            or 0
        )
        persons = 0
        if admissions:
            session.execute(delete(Admission).where(Admission.event_date < cutoff))
            orphans = ~exists().where(Admission.person_id == Person.id)
            persons = int(
                session.scalar(select(func.count()).select_from(Person).where(orphans)) or 0
            )
            session.execute(
                delete(Person).where(orphans).execution_options(synchronize_session=False)
            )
            audit.append(
                session,
                audit.RETENTION,
                cutoff=cutoff.isoformat(),
                days=days,
                admissions=admissions,
                persons=persons,
            )
    return RetentionRun(cutoff=cutoff, admissions=admissions, persons=persons)
