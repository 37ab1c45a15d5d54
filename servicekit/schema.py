"""Schema conventions every service's models share: the constraint naming convention (so that
Alembic migrations name constraints the same way on SQLite and PostgreSQL) and the primary-key
type. Each service keeps its own ``Base`` and metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

# BIGINT primary keys on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def named_metadata() -> MetaData:
    """A fresh ``MetaData`` with the shared naming convention, for one service's ``Base``."""
    return MetaData(naming_convention=NAMING)
