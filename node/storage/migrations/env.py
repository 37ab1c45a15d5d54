"""Alembic environment: the engine comes from node.storage.db, never from a file."""

from __future__ import annotations

from node.storage.models import Base
from servicekit.migrations import run_env

run_env(Base.metadata, "publieksdata node db upgrade")
