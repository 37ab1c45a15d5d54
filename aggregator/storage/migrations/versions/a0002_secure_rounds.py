"""secure rounds: threshold, phases, outcome; per-task phase messages

Revision ID: a0002
Revises: a0001
Create Date: 2026-12-05 09:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0002"
down_revision = "a0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("round") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="independent")
        )
        batch.add_column(sa.Column("threshold", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("phase_deadline", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("outcome", sa.Text(), nullable=True))
        batch.add_column(sa.Column("roster", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failure", sa.String(length=64), nullable=True))
    with op.batch_alter_table("task") as batch:
        batch.add_column(
            sa.Column("phase", sa.String(length=16), nullable=True, server_default="query")
        )
        batch.add_column(sa.Column("keys", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("shares", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("reveal", sa.LargeBinary(), nullable=True))
    # Tasks of rounds that were already settled have nothing left to hand over.
    op.execute("UPDATE task SET phase = NULL WHERE status <> 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("task") as batch:
        for column in ("reveal", "shares", "keys", "phase"):
            batch.drop_column(column)
    with op.batch_alter_table("round") as batch:
        for column in (
            "failure",
            "roster",
            "outcome",
            "phase_deadline",
            "phase",
            "threshold",
            "mode",
        ):
            batch.drop_column(column)
