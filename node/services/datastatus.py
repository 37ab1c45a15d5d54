"""What the node holds, for its operator: imports, coverage, data-quality warnings, budgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from node.services.retention import cutoff_for
from node.storage.models import Admission, BudgetPeriod, GeoPc4, ImportBatch, Person
from protocol.catalogue import UNKNOWN

# Above this share of missing values, the page shows advice on fixing it.
WARN_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class Quality:
    name: str  # missing_pc4, missing_age, missing_artform
    share: float
    warn: bool


@dataclass(slots=True)
class DataStatus:
    admissions: int = 0
    persons: int = 0
    first_date: date | None = None
    last_date: date | None = None
    imports: list[ImportBatch] = field(default_factory=list)
    quality: list[Quality] = field(default_factory=list)
    geo_loaded: bool = False
    retention_due: int | None = None  # admissions the next retention run would delete


def data_status(
    session: Session, retention_days: int | None = None, import_limit: int = 50
) -> DataStatus:
    status = DataStatus()
    status.admissions = int(session.scalar(select(func.count()).select_from(Admission)) or 0)
    status.persons = int(session.scalar(select(func.count()).select_from(Person)) or 0)
    first, last = session.execute(
        select(func.min(Admission.event_date), func.max(Admission.event_date))
    ).one()
    status.first_date, status.last_date = first, last
    status.imports = list(
        session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(import_limit))
    )
    status.geo_loaded = session.scalar(select(GeoPc4.pc4).limit(1)) is not None
    if status.persons:
        no_pc4 = session.scalar(
            select(func.count()).select_from(Person).where(Person.pc4.is_(None))
        )
        share = (no_pc4 or 0) / status.persons
        status.quality.append(Quality("missing_pc4", share, share > WARN_SHARE))
    if status.admissions:
        for name, column in (
            ("missing_age", Admission.age_band),
            ("missing_artform", Admission.artform),
        ):
            unknown = session.scalar(
                select(func.count()).select_from(Admission).where(column == UNKNOWN)
            )
            share = (unknown or 0) / status.admissions
            status.quality.append(Quality(name, share, share > WARN_SHARE))
    if retention_days is not None:
        status.retention_due = int(
            session.scalar(
                select(func.count())
                .select_from(Admission)
                .where(Admission.event_date < cutoff_for(retention_days))
            )
            or 0
        )
    return status


def budget_history(session: Session, limit: int = 12) -> list[tuple[str, float]]:
    from node.services.ledger import UNITS_PER_RHO

    rows = session.execute(
        select(BudgetPeriod.period, BudgetPeriod.spent_units)
        .order_by(BudgetPeriod.period.desc())
        .limit(limit)
    ).all()
    return [(period, units / UNITS_PER_RHO) for period, units in rows]
