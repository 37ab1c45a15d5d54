"""sector pseudonym: one value per person and year (issue 15)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sector_pseudonym",
        sa.Column(
            "person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_sector_pseudonym_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "year", name=op.f("pk_sector_pseudonym")),
    )


def downgrade() -> None:
    op.drop_table("sector_pseudonym")
