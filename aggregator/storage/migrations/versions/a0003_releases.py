"""releases: the sealed, hash-chained publications

Revision ID: a0003
Revises: a0002
Create Date: 2026-12-05 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0003"
down_revision = "a0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_release")),
        sa.UniqueConstraint("hash", name=op.f("uq_release_hash")),
        sa.UniqueConstraint("slug", name=op.f("uq_release_slug")),
        sa.UniqueConstraint("release_id", "version", name=op.f("uq_release_release_id")),
    )


def downgrade() -> None:
    op.drop_table("release")
