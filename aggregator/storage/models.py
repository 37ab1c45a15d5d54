"""The aggregator's schema: the node registry, enrolment invites, API tokens, rounds and tasks.
Changes go through an Alembic migration (``aggregator/storage/migrations``).

Nothing here holds a secret in clear: invite codes and tokens are stored as SHA-256 hashes.
Task bodies are the nodes' signed answers or refusals, byte for byte, so that every merged
figure can be re-verified later against the node's key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.schema import BigId, named_metadata


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = named_metadata()


class Node(Base):
    """An enrolled institution and the last report (budget, policy) it signed."""

    __tablename__ = "node"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    institution: Mapped[str] = mapped_column(String(120))
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | removed
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    report: Mapped[str | None] = mapped_column(Text, nullable=True)  # NodeReport JSON
    report_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The budget high-water mark: the node's own signed message (a poll or an answer) with the
    # highest spend it reported for its latest period. Sent back to a node that reports less
    # (restored from an old backup), which then raises its ledger to it (docs/how-to/backup).
    budget_proof: Mapped[str | None] = mapped_column(Text, nullable=True)
    budget_proof_period: Mapped[str | None] = mapped_column(String(16), nullable=True)
    budget_proof_units: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The node's previous key after a rotation, still accepted until retired_until.
    retired_key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    retired_public_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retired_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Invite(Base):
    __tablename__ = "invite"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    institution: Mapped[str] = mapped_column(String(120))
    node_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # set for a re-key
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EnrolFailure(Base):
    """A wrong invite code, by source address; counted for the lockout."""

    __tablename__ = "enrol_failure"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))  # analyst | admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Round(Base):
    __tablename__ = "round"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    query_id: Mapped[str] = mapped_column(String(80), unique=True)
    query_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)  # QuerySpec JSON
    analyst: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    quorum: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | closed
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Secure rounds (design §9): the threshold t, the current phase and when it ends, the
    # unmasked sum once computed (JSON), or why the round failed. Never a per-node vector.
    mode: Mapped[str] = mapped_column(
        String(16), default="independent", server_default="independent"
    )
    threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)
    phase_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    roster: Mapped[str | None] = mapped_column(Text, nullable=True)  # U1 key ids, JSON
    failure: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Task(Base):
    """One node's part of a round. ``body`` is the node's signed answer or refusal, verbatim."""

    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint("round_id", "node_id"),
        Index("ix_task_node_status", "node_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    round_id: Mapped[str] = mapped_column(ForeignKey("round.id"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("node.id"))
    status: Mapped[str] = mapped_column(String(16))  # a protocol.results.NodeStatus value
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cost_rho: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The phase this node is asked to do now (None: nothing to hand over). Independent rounds
    # have the one phase "query". Secure rounds keep each signed phase message verbatim; the
    # masked vector (``body``) is uniformly random on its own.
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True, server_default="query")
    keys: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    shares: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    reveal: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Release(Base):
    """A sealed release (design §10): the signed bytes exactly as published, never updated.

    ``sequence`` is the release's place in the hash chain (1, 2, 3, …); a correction is a new
    row that points to the hash of the release it corrects.
    """

    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("release_id", "version"),)

    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    release_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[bytes] = mapped_column(LargeBinary)
