"""Alembic environment: the engine comes from keyholder.storage.db, never from a file."""

from __future__ import annotations

from keyholder.storage.models import Base
from servicekit.migrations import run_env

run_env(Base.metadata, "publieksdata keyholder db upgrade")
