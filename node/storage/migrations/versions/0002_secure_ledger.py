"""secure-mode ledger columns: mode, threshold and worst-case rho

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entry") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="independent")
        )
        batch.add_column(sa.Column("threshold", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rho_worst", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entry") as batch:
        batch.drop_column("rho_worst")
        batch.drop_column("threshold")
        batch.drop_column("mode")
