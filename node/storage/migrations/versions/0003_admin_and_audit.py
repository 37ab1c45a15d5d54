"""admin pages: audit log (hash chain), policy overrides, approval queue, operator login

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_event"),
        sa.UniqueConstraint("hash", name="uq_audit_event_hash"),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_kind", "audit_event", ["kind"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("hash", sa.String),
    )
    _backfill(head)
    op.create_table(
        "policy_setting",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_policy_setting"),
    )
    op.create_table(
        "pending_approval",
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("task_id", sa.String(120), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("requester_key_id", sa.String(32), nullable=False),
        sa.Column("analyst", sa.String(120), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pending_approval"),
    )
    op.create_index("ix_pending_approval_status", "pending_approval", ["status"])
    op.create_table(
        "admin_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_account"),
    )
    op.create_table(
        "admin_session",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_admin_session"),
    )
    op.create_table(
        "admin_login_failure",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_login_failure"),
    )
    op.create_index("ix_admin_login_failure_at", "admin_login_failure", ["at"])


def _backfill(head: sa.TableClause) -> None:
    """Start the audit chain with the answers already in the ledger (a node upgraded from the
    previous release), so that every ledger answer has its event. The hashing is written out
    here, not imported, so that this migration does not change when the code does; it matches
    node/services/audit.py: SHA-256(previous hash ‖ RFC 8785 JSON of the event)."""
    import hashlib
    from datetime import UTC, datetime

    import rfc8785

    conn = op.get_bind()
    ledger = conn.execute(
        sa.text(
            "SELECT query_id, analyst, requester_key_id, mode, threshold, rho, rho_worst, "
            "epsilon, delta, period, created_at, answer_sha256 FROM ledger_entry ORDER BY id"
        )
    ).all()
    events = sa.table(
        "audit_event",
        sa.column("seq", sa.BigInteger),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("kind", sa.String),
        sa.column("body", sa.Text),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    prev, rows = "0" * 64, []
    for seq, entry in enumerate(ledger, start=1):
        at = entry.created_at
        if isinstance(at, str):  # SQLite hands back text through a plain text() query
            at = datetime.fromisoformat(at)
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        document = {
            "seq": seq,
            "at": at.isoformat(),
            "kind": "answer",
            "query_id": entry.query_id,
            "analyst": entry.analyst,
            "via": entry.requester_key_id,
            "mode": entry.mode,
            "threshold": entry.threshold,
            "rho": entry.rho,
            "rho_worst": entry.rho_worst,
            "epsilon": entry.epsilon,
            "delta": entry.delta,
            "period": entry.period,
            "cap_rho": None,
            "query": None,
            "answer_sha256": entry.answer_sha256,
            "backfilled": True,
        }
        body = rfc8785.dumps(document).decode("utf-8")
        digest = hashlib.sha256(prev.encode("ascii") + body.encode("utf-8")).hexdigest()
        rows.append(
            {
                "seq": seq,
                "at": at,
                "kind": "answer",
                "body": body,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        op.bulk_insert(events, rows)
    op.bulk_insert(head, [{"id": 1, "seq": len(rows), "hash": prev}])  # appends lock this row


def downgrade() -> None:
    for name in (
        "admin_login_failure",
        "admin_session",
        "admin_account",
        "pending_approval",
        "policy_setting",
        "audit_head",
        "audit_event",
    ):
        op.drop_table(name)
