"""node budget high-water mark (the node's own signed message with its highest spend) and the
node's retired key during a key rotation's overlap window

Revision ID: a0004
Revises: a0003
Create Date: 2026-12-05 17:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0004"
down_revision = "a0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.add_column(sa.Column("budget_proof", sa.Text(), nullable=True))
        batch.add_column(sa.Column("budget_proof_period", sa.String(16), nullable=True))
        batch.add_column(sa.Column("budget_proof_units", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("retired_key_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("retired_public_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("retired_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.drop_column("retired_until")
        batch.drop_column("retired_public_key")
        batch.drop_column("retired_key_id")
        batch.drop_column("budget_proof_units")
        batch.drop_column("budget_proof_period")
        batch.drop_column("budget_proof")
