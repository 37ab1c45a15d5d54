"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

PostgreSQL tests use the server at 127.0.0.1:5432 (override with PUBLIEKSDATA_TEST_POSTGRES_URL),
each test in its own schema. They skip with a reason when no server answers, unless
PUBLIEKSDATA_REQUIRE_POSTGRES=1 (set by .ci/run), in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, text

os.environ["PUBLIEKSDATA_TESTING"] = "1"

from node.storage.db import make_engine, upgrade
from tests import optional
from tests.optional import POSTGRES, need

# No test depends on the terminal it runs in: pin what Rich (the CLI's output) reads from the
# environment, so that COLUMNS=30 or FORCE_COLOR in the caller's shell changes nothing.
os.environ["COLUMNS"] = "80"
os.environ["LINES"] = "25"
for _name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
    os.environ.pop(_name, None)

# Property tests draw the same examples on every run and keep no example database: a failure is
# the code's, never the draw's, and the suite passes or fails the same way on every machine.
settings.register_profile("publieksdata", derandomize=True, database=None, print_blob=True)
settings.load_profile("publieksdata")

POSTGRES_URL = os.environ.get(
    "PUBLIEKSDATA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """None if PostgreSQL answers, else the reason."""
    if "reason" not in _pg_state:
        try:
            probe = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # any failure to connect means "not available"
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            _pg_state["reason"] = f"PostgreSQL at {POSTGRES_URL} is not reachable: {first}"
    return _pg_state["reason"]


def require_postgres() -> None:
    need(POSTGRES, postgres_unavailable())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: tell the controller which optional parts were available."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["optional_parts_used"] = optional.used()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the pytest-xdist controller: collect what each worker found available."""
    optional.mark_used(getattr(node, "workeroutput", {}).get("optional_parts_used", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which optional parts (PostgreSQL, Chromium, network namespaces) ran or were skipped."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reasons.append(str(longrepr[2]))
    terminalreporter.section("optional parts")
    for line in optional.summary_lines(reasons):
        terminalreporter.line(line)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database engine on each backend."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()
