"""Alembic environment: the engine comes from aggregator.storage.db, never from a file."""

from __future__ import annotations

from aggregator.storage.models import Base
from servicekit.migrations import run_env

run_env(Base.metadata, "publieksdata aggregator db upgrade")
