"""The key holder's schema. Changes go through an Alembic migration.

It holds who may ask (enrolled nodes and their invites), how much each asked per window, and an
audit log of every batch: node, count, year and time. Never an element, never a share.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.schema import BigId, named_metadata


class Base(DeclarativeBase):
    metadata = named_metadata()


class Invite(Base):
    __tablename__ = "invite"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    institution: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Node(Base):
    __tablename__ = "node"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    institution: Mapped[str] = mapped_column(String(120))
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Usage(Base):
    """How many elements a node had evaluated in one rate-limit window."""

    __tablename__ = "usage"

    node_id: Mapped[str] = mapped_column(ForeignKey("node.id"), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


class AuditEntry(Base):
    """One evaluation request: who, how many, for which year, when, and how it ended."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    node_id: Mapped[str] = mapped_column(String(16), index=True)
    year: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # evaluated | rate_limited


class EnrolFailure(Base):
    __tablename__ = "enrol_failure"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
