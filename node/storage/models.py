"""The node's canonical schema (design §4). Changes go through an Alembic migration.

No direct identifier is stored: persons are keyed by an HMAC pseudonym, tickets by an HMAC of the
source's ticket id. Dimension codes are catalogue codes, denormalised onto the admission (the fact
table) at import so that a query is one aggregate over one table plus two small joins.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.schema import BigId, named_metadata


class Base(DeclarativeBase):
    metadata = named_metadata()


class ImportBatch(Base):
    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows_read: Mapped[int] = mapped_column(Integer)
    rows_inserted: Mapped[int] = mapped_column(Integer)
    rows_updated: Mapped[int] = mapped_column(Integer)
    rows_unchanged: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer)


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (UniqueConstraint("source", "event_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(128))
    production: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(255))
    artform: Mapped[str] = mapped_column(String(24))
    venue: Mapped[str | None] = mapped_column(String(255))
    hall: Mapped[str | None] = mapped_column(String(255))
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    capacity: Mapped[int | None] = mapped_column(Integer)
    is_free: Mapped[bool] = mapped_column(Boolean, default=False)


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    pc4: Mapped[str | None] = mapped_column(String(4))
    segment: Mapped[str] = mapped_column(String(16), default="unknown")
    first_seen: Mapped[date | None] = mapped_column(Date)


class Admission(Base):
    __tablename__ = "admission"
    __table_args__ = (
        UniqueConstraint("source", "ticket_ref"),
        Index("ix_admission_event_date_person", "event_date", "person_id"),
        Index("ix_admission_person_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    ticket_ref: Mapped[str] = mapped_column(String(32))
    # 31 bits of ticket_ref: the row's own pseudo-random sampling key (node/services/aggregate.py).
    sample_key: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"))
    event_date: Mapped[date] = mapped_column(Date)
    event_month: Mapped[str] = mapped_column(String(7))
    event_quarter: Mapped[str] = mapped_column(String(7))
    event_year: Mapped[str] = mapped_column(String(4))
    weekday: Mapped[str] = mapped_column(String(3))
    artform: Mapped[str] = mapped_column(String(24))
    ordered_date: Mapped[date | None] = mapped_column(Date)
    lead_time: Mapped[str] = mapped_column(String(10))
    price_cents: Mapped[int] = mapped_column(Integer)
    price_type: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12))
    attended: Mapped[bool | None] = mapped_column(Boolean)
    age_band: Mapped[str] = mapped_column(String(8))


class SectorPseudonym(Base):
    """A person's sector value for one year: the first 16 bytes of the threshold OPRF of their
    normalised identifier and the year (protocol/sector.py). Only when the node is enrolled with
    key holders; never the identifier itself (docs/explanation/sector-pseudonym.md)."""

    __tablename__ = "sector_pseudonym"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(String(32))


class GeoPc4(Base):
    """The operator-loaded PC4 → municipality → province table (CBS; not shipped)."""

    __tablename__ = "geo_pc4"

    pc4: Mapped[str] = mapped_column(String(4), primary_key=True)
    municipality_code: Mapped[str] = mapped_column(String(6))
    province: Mapped[str] = mapped_column(String(8))


class BudgetPeriod(Base):
    """Spent budget per period, in integer nano-units of ρ (10⁻⁹ ρ); see node/services/ledger.py."""

    __tablename__ = "budget_period"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    spent_units: Mapped[int] = mapped_column(BigInteger, default=0)


class AnalystBudget(Base):
    __tablename__ = "analyst_budget"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    analyst: Mapped[str] = mapped_column(String(120), primary_key=True)
    spent_units: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerEntry(Base):
    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(String(80), unique=True)
    query_hash: Mapped[str] = mapped_column(String(64))
    requester_key_id: Mapped[str] = mapped_column(String(32))
    analyst: Mapped[str] = mapped_column(String(120))
    period: Mapped[str] = mapped_column(String(16), index=True)
    rho_units: Mapped[int] = mapped_column(BigInteger)
    rho: Mapped[float] = mapped_column(Float)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answer: Mapped[bytes] = mapped_column(LargeBinary)
    answer_sha256: Mapped[str] = mapped_column(String(64))
    # Secure rounds: ``rho`` holds if at least ``threshold`` honest nodes' noise shares are in
    # the sum; ``rho_worst`` is this node's own share alone (the assumption failing).
    mode: Mapped[str] = mapped_column(
        String(16), default="independent", server_default="independent"
    )
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rho_worst: Mapped[float | None] = mapped_column(Float, nullable=True)


class SeenNonce(Base):
    __tablename__ = "seen_nonce"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class TrustedKey(Base):
    """Public keys allowed to send queries (an aggregator, or the operator's own tooling)."""

    __tablename__ = "trusted_key"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(120))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GdprRequest(Base):
    """A log of GDPR access and erasure requests. It stores neither identifier nor pseudonym."""

    __tablename__ = "gdpr_request"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    found: Mapped[bool] = mapped_column(Boolean)
    admissions: Mapped[int] = mapped_column(Integer)


class AuditEvent(Base):
    """The operator's audit log (node/services/audit.py): append-only and hash-chained.

    ``body`` is the event's canonical JSON, and ``hash`` = SHA-256(previous hash ‖ body), so any
    change to an event, or a removed event, breaks the chain from that point on. ``at`` and
    ``kind`` repeat what the body says, for listing and filtering.
    """

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """One row: the chain's last sequence number and hash. Appends lock it (SELECT … FOR UPDATE
    on PostgreSQL; SQLite's write transactions are serial already), so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class PolicySetting(Base):
    """A policy value set on the admin pages; it overrides node.env (node/services/policy_store)."""

    __tablename__ = "policy_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingApproval(Base):
    """A query waiting for the operator's decision (policy ``approval = manual``)."""

    __tablename__ = "pending_approval"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # the query id
    task_id: Mapped[str] = mapped_column(String(120))
    request: Mapped[str] = mapped_column(Text)  # the QueryRequest as JSON
    requester_key_id: Mapped[str] = mapped_column(String(32))
    analyst: Mapped[str] = mapped_column(String(120))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)  # waiting/approved/declined/expired
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AdminAccount(Base):
    """The operator's login (one account). Only an scrypt hash of the password is stored."""

    __tablename__ = "admin_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AdminSession(Base):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "admin_session"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AdminLoginFailure(Base):
    """A failed login, for the lockout. Nothing about who tried is kept."""

    __tablename__ = "admin_login_failure"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
