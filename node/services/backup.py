"""Backing a node up and restoring it, without ever refunding budget.

A backup is a directory: the node's settings and keys (``node.env``, ``secret.key``,
``signing.key``, ``aggregator.json``), its database (``node.db``, a consistent copy made with
SQLite's online backup API even while the node runs; or ``node.pgdump`` from ``pg_dump
--format=custom`` for PostgreSQL) and ``manifest.json`` (when, which database, the schema
revision, the budget spent per period and the audit log's head).

The danger of restoring is the ledger: a backup made before some answers were released shows less
budget spent than the node really spent, so the restored node could spend it again. Two things
prevent that:

* the aggregator keeps, per node, the node's own signed message (poll or answer) stating the
  highest spend it has seen for the node's latest period, and sends it back when the node reports
  less; the node checks its own signature and raises its ledger to it (node/connector.py);
* ``restore`` leaves a marker (``budget-sync.required``) that makes the node refuse every query,
  also local and direct ones, until its aggregator has answered a poll (with or without such a
  proof). A node that never joined an aggregator gets no marker: it has no one to ask, and the
  operator is warned that answers released after the backup are not in its ledger.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from node.link import link_path
from node.services import audit, ledger
from node.settings import ENV_FILE, SECRET_FILE, SIGNING_KEY_FILE, NodeSettings
from node.storage.db import current_revision, make_sessionmaker, transaction
from node.storage.models import Base, BudgetPeriod

MANIFEST = "manifest.json"
SQLITE_FILE = "node.db"
PG_FILE = "node.pgdump"
FORMAT = "publieksdata.node-backup/1"


class BackupError(RuntimeError):
    """The backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    database: str  # sqlite | postgresql
    revision: str | None
    spent: dict[str, float]
    audit_head: str
    joined: bool


def _home_files(settings: NodeSettings) -> list[Path]:
    names = [ENV_FILE, SECRET_FILE, SIGNING_KEY_FILE]
    files = [settings.home / n for n in names]
    if link_path(settings.home).exists():
        files.append(link_path(settings.home))
    return files


def _libpq_url(database_url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…`` for pg_dump and pg_restore."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed; install the PostgreSQL client tools")
    return found


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        # The tools' messages name tables and options, not data; drop any line with a URL.
        lines = [line for line in result.stderr.splitlines() if "://" not in line]
        raise BackupError(f"{what} failed: {' '.join(lines)[:300] or result.returncode}")


def backup(settings: NodeSettings, engine: Engine, out: Path) -> Manifest:
    if out.exists():
        raise BackupError(f"{out} exists already; give a new directory")
    out.mkdir(parents=True, mode=0o700)
    try:
        for path in _home_files(settings):
            target = out / path.name
            shutil.copyfile(path, target)
            os.chmod(target, 0o600)
        dialect = engine.dialect.name
        if dialect == "sqlite":
            source = make_url(settings.database_url).database
            if not source:
                raise BackupError("the node's SQLite database has no file")
            with sqlite3.connect(source) as src, sqlite3.connect(out / SQLITE_FILE) as dst:
                src.backup(dst)
            src.close()
            dst.close()
            os.chmod(out / SQLITE_FILE, 0o600)
        elif dialect == "postgresql":
            # Only the node's tables (in its schema), not the schema itself: restoring then
            # never touches anything else in the database.
            with engine.connect() as conn:
                schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar())
            _run(
                [
                    _tool("pg_dump"),
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--table={schema}.*",
                    "--file",
                    str(out / PG_FILE),
                    _libpq_url(settings.database_url),
                ],
                "pg_dump",
            )
            os.chmod(out / PG_FILE, 0o600)
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise BackupError(f"unsupported database {dialect}")
        factory = make_sessionmaker(engine)
        with factory() as session:
            spent = {
                p: u / ledger.UNITS_PER_RHO
                for p, u in session.execute(select(BudgetPeriod.period, BudgetPeriod.spent_units))
            }
            head = audit.head(session)[1]
        manifest = Manifest(
            created_at=datetime.now(UTC).isoformat(),
            database=dialect,
            revision=current_revision(engine),
            spent=spent,
            audit_head=head,
            joined=link_path(settings.home).exists(),
        )
        (out / MANIFEST).write_text(
            json.dumps({"format": FORMAT, **asdict(manifest)}, indent=2) + "\n", "utf-8"
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        data: dict[str, Any] = json.loads((source / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        raise BackupError(f"{source} is not a node backup (no readable {MANIFEST})") from None
    if data.pop("format", None) != FORMAT:
        raise BackupError(f"{source} is not a node backup of this version")
    return Manifest(**data)


def _restore_postgres(settings: NodeSettings, engine: Engine, source: Path) -> None:
    """Replace the node's tables by the backup's in one transaction: DROP them, then the SQL
    that pg_restore writes, run by psql with --single-transaction and ON_ERROR_STOP, so a
    failure leaves the database as it was."""
    with engine.connect() as conn:
        schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar())
    engine.dispose()
    tables = [*Base.metadata.tables, "alembic_version"]
    drops = "".join(f'DROP TABLE IF EXISTS "{schema}"."{t}" CASCADE;\n' for t in tables)
    script = settings.home / ".restore.sql"  # holds data: the node home, deleted at the end
    try:
        with script.open("w", encoding="utf-8") as handle:
            handle.write(drops)
            handle.flush()
            result = subprocess.run(  # noqa: S603
                [
                    _tool("pg_restore"),
                    "--no-owner",
                    "--no-privileges",
                    "--file",
                    "-",
                    str(source / PG_FILE),
                ],
                stdout=handle,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            raise BackupError(f"pg_restore could not read the backup: {result.stderr[:300]}")
        _run(
            [
                _tool("psql"),
                "--quiet",
                "--no-psqlrc",
                "--single-transaction",
                "--set",
                "ON_ERROR_STOP=1",
                "--file",
                str(script),
                _libpq_url(settings.database_url),
            ],
            "restoring the PostgreSQL backup",
        )
    finally:
        script.unlink(missing_ok=True)


def restore(settings: NodeSettings, engine: Engine, source: Path) -> Manifest:
    """Restore into ``settings.home`` (the node must be stopped). The keys must be the node's
    own: a backup of another node is refused unless the home has no keys yet."""
    manifest = read_manifest(source)
    if manifest.database != engine.dialect.name:
        raise BackupError(
            f"the backup holds a {manifest.database} database; this node uses {engine.dialect.name}"
        )
    for name in (SECRET_FILE, SIGNING_KEY_FILE):
        here, there = settings.home / name, source / name
        if here.exists() and here.read_bytes() != there.read_bytes():
            raise BackupError(
                f"{name} in the backup differs from this node's: it is another node's backup"
            )
    if manifest.database == "sqlite":
        target = make_url(settings.database_url).database
        if not target:
            raise BackupError("the node's SQLite database has no file")
        engine.dispose()
        with sqlite3.connect(source / SQLITE_FILE) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        src.close()
        dst.close()
    else:
        _restore_postgres(settings, engine, source)
    for path in source.iterdir():
        if path.name in (ENV_FILE, SECRET_FILE, SIGNING_KEY_FILE, link_path(settings.home).name):
            target_path = settings.home / path.name
            if not target_path.exists() or path.name != ENV_FILE:
                shutil.copyfile(path, target_path)
                os.chmod(target_path, 0o600)
    if manifest.joined:
        settings.budget_sync_path.write_text(
            "Restored from a backup: answering waits for the aggregator to confirm the budget.\n",
            "utf-8",
        )
    with transaction(make_sessionmaker(engine)) as session:
        audit.append(
            session,
            audit.BACKUP_RESTORED,
            backup_created_at=manifest.created_at,
            spent_in_backup=manifest.spent,
        )
    return manifest
