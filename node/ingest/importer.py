"""Importing one export file into the node database: atomic, idempotent and fast.

The whole file is one database transaction: either every valid row is written, or (on any error,
a crash, or rejected rows without ``skip_invalid``) nothing is, not even the import batch record.
Rows are keyed by (source, ticket reference) and events by (source, event key), so importing the
same file again changes nothing, and a later export in which a ticket was refunded updates that
ticket.

The file is read, parsed and written in chunks, so memory stays bounded however large the file
is. A large file is parsed in a helper process while this one writes (see
:mod:`node.ingest.stream`). Writing on a second *thread* was tried and measured slower: SQLite's
``executemany`` releases and re-acquires Python's GIL for every row, and the threads then queue
behind each other.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Engine, Table, delete, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from node.ingest.errors import ImportRefused, IngestError, ProfileError, UnreadableFile
from node.ingest.profile import Profile
from node.ingest.reader import ReadLimits
from node.ingest.report import ImportReport, Reject, default_rejects_path, write_rejects
from node.ingest.sector import SectorPseudonymiser, attach
from node.ingest.stream import ParsedFile
from node.ingest.writer import AdmissionWriter
from node.services import audit
from node.storage.models import ImportBatch

# Files at least this large are parsed in a helper process (about 100,000 rows), when at least
# this much of the machine's CPU is idle.
HELPER_PROCESS_MIN_BYTES = 32 * 1024 * 1024
HELPER_MIN_IDLE_CORES = 0.5
SQLITE_IMPORT_CACHE_KIB = 128 * 1024
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BATCH = cast(Table, ImportBatch.__table__)

Progress = Callable[[int, int | None], None]

__all__ = [
    "ImportRefused",
    "ImportReport",
    "IngestError",
    "ProfileError",
    "ReadLimits",
    "UnreadableFile",
    "check_source",
    "import_file",
]


def import_file(
    factory: sessionmaker[Session],
    secret: bytes,
    path: Path,
    profile: Profile,
    *,
    source: str | None = None,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    defaults: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    max_rejected_share: float | None = None,
    limits: ReadLimits | None = None,
    sector: SectorPseudonymiser | None = None,
) -> ImportReport:
    """Import one CSV or XLSX export.

    Raises :class:`~node.ingest.errors.ImportRefused` (nothing written) when rows were rejected
    and ``skip_invalid`` is false; :class:`~node.ingest.errors.ProfileError` for a bad default;
    :class:`~node.ingest.errors.UnreadableFile` when the file cannot be read as an export, has
    no rows, or (XLSX) is larger than ``limits`` allow.

    With ``skip_invalid``, the valid rows are imported and the rejected ones are listed in a
    ``file;line;column;reason`` CSV at ``rejects_path`` (default: ``<name>.rejects.csv`` next to
    the file), unless more than ``max_rejected_share`` of the rows (default: the profile's,
    5%) is rejected: then the import is refused (``ImportRefused.too_many``) and nothing is
    written. When nothing changed, no import batch is recorded and ``batch_id`` is None.
    ``progress(rows_done, rows_total)`` is called after every chunk; the total is an estimate
    from the file's line count (None when unknown).

    With ``sector`` (the node is enrolled with key holders), every person with an identifier
    gets a sector value per year of their admissions, inside the same transaction; when too few
    key holders answer, :class:`~node.ingest.sector.SectorUnavailable` is raised and nothing is
    written.
    """
    started = time.perf_counter()
    profile = profile.with_defaults(defaults)
    source = check_source(source if source is not None else profile.name)
    engine = _engine_of(factory)
    parsed = ParsedFile(
        path,
        profile,
        secret=secret,
        source=source,
        skip_invalid=skip_invalid,
        helper_process=_use_helper_process(path),
        limits=limits,
        sector=sector is not None,
    )
    allowed = profile.max_rejected_share if max_rejected_share is None else max_rejected_share
    refused_share: float | None = None
    with parsed as facts:
        report = ImportReport(
            file=facts.file_name, profile=profile.name, source=source, file_sha256=facts.sha256
        )
        rejects: list[Reject] = []
        try:
            with _import_connection(engine) as conn:
                batch_id = _start_batch(conn, report)
                writer = AdmissionWriter(
                    conn,
                    source=source,
                    batch_id=batch_id,
                    file_name=facts.file_name,
                    ticket_column=facts.ticket_label,
                )
                writer.prepare_bulk_load(facts.total_rows)
                for chunk in parsed.chunks():
                    rejects += chunk.rejects
                    writer.add_events(chunk.events)
                    writer.write(chunk.rows, chunk.persons)
                    if progress is not None:
                        progress(chunk.rows_read, facts.total_rows)
                report.rows_read = facts.rows_read
                if not report.rows_read:
                    raise UnreadableFile(
                        f"{facts.file_name}: the file has column names but no rows; nothing was "
                        "imported. Check the period or the filter of the export."
                    )
                report.birth_dates_implausible = facts.birth_dates_implausible
                rejects += writer.rejects
                rejects.sort(key=lambda r: r.line)
                report.rejected = len(rejects)
                report.rejects = rejects
                report.warnings = facts.warnings + report.warnings
                if rejects and not skip_invalid:
                    raise _Refused
                if _share_exceeded(len(rejects), report.rows_read, allowed):
                    refused_share = allowed
                    raise _Refused
                writer.finish(facts.persons)
                if sector is not None and facts.sector_ids:
                    report.sector_values = attach(conn, facts.sector_ids, sector)
                _finish_batch(conn, report, writer, batch_id)
        except _Refused:
            report.inserted = report.updated = report.unchanged = 0
            report.batch_id = None
            report.seconds = time.perf_counter() - started
            if rejects_path is not None:
                write_rejects(rejects_path, rejects)
                report.rejects_file = rejects_path
            raise ImportRefused(report, allowed_share=refused_share) from None
    if progress is not None:
        progress(report.rows_read, report.rows_read)
    if rejects:
        target = rejects_path or default_rejects_path(path)
        write_rejects(target, rejects)
        report.rejects_file = target
    report.seconds = time.perf_counter() - started
    return report


def check_source(source: str) -> str:
    """A source name: letters, digits, '.', '-' or '_', at most 64 characters."""
    if not SOURCE_PATTERN.fullmatch(source):
        raise IngestError(
            f"the source name {source!r} is not valid: use letters, digits, '.', '-' or '_' "
            "(at most 64), e.g. 'ticketmatic' or 'kassa-2'"
        )
    return source


def _share_exceeded(rejected: int, read: int, allowed: float) -> bool:
    """Whether more than ``allowed`` of the rows was rejected (in millionths, so that 29 of 100
    rows is not more than 0.29 because of floating-point rounding)."""
    return rejected * 1_000_000 > round(allowed * 1_000_000) * read


class _Refused(Exception):
    """Internal: roll the transaction back because rows were rejected."""


def _use_helper_process(path: Path) -> bool:
    """Parse in a helper process only for a large file, and only when about a core is idle: on a
    busy machine the second process gets no core of its own, and handing chunks over between
    processes then costs more than it gains (measured: 1M rows took 16 s with the helper and
    19 s without at half a core idle, 25 s with and 20 s without when no core was idle)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False  # the reader reports the problem
    cores = os.cpu_count() or 1
    if size < HELPER_PROCESS_MIN_BYTES or cores < 2:
        return False
    idle = _idle_cores(cores)
    return idle is None or idle >= HELPER_MIN_IDLE_CORES


def _idle_cores(cores: int, window: float = 0.25) -> float | None:
    """How many cores were idle during a short moment (Linux /proc/stat; else the load average;
    None if neither is available)."""

    def times() -> tuple[int, int]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle_before, total_before = times()
        time.sleep(window)
        idle_after, total_after = times()
    except (OSError, ValueError, IndexError):
        try:
            return max(cores - os.getloadavg()[0], 0.0)
        except OSError:
            return None
    elapsed = total_after - total_before
    return cores * (idle_after - idle_before) / elapsed if elapsed > 0 else None


def _engine_of(factory: sessionmaker[Session]) -> Engine:
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("import_file needs a sessionmaker bound to an Engine")
    return bind


@contextmanager
def _import_connection(engine: Engine) -> Iterator[Connection]:
    """One connection, one transaction, tuned for a bulk load.

    SQLite: the foreign-key checks are switched off for this connection only (the writer only
    uses ids it has just looked up or allocated) and the page cache is enlarged, both before the
    transaction starts because SQLite ignores these settings inside one. PostgreSQL: the import
    tables are locked against other writers (readers are not blocked), so two imports never race.
    """
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
            raw.execute(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text("LOCK TABLE event, person, admission IN SHARE ROW EXCLUSIVE MODE")
                    )
                yield conn
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
                raw.execute("PRAGMA cache_size=-2000")


def _start_batch(conn: Connection, report: ImportReport) -> int:
    previous = conn.execute(
        select(BATCH.c.id, BATCH.c.imported_at)
        .where(BATCH.c.file_sha256 == report.file_sha256, BATCH.c.source == report.source)
        .order_by(BATCH.c.id.desc())
        .limit(1)
    ).first()
    if previous is not None:
        report.warnings.append(
            f"An identical file was imported before for source {report.source!r} (batch "
            f"{previous.id}, {previous.imported_at:%Y-%m-%d %H:%M})."
        )
    values = {
        "source": report.source,
        "profile": report.profile,
        "file_name": report.file[:255],
        "file_sha256": report.file_sha256,
        "imported_at": datetime.now(UTC),
        "rows_read": 0,
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_unchanged": 0,
        "rows_rejected": 0,
    }
    batch_id = conn.execute(insert(BATCH).values(values).returning(BATCH.c.id)).scalar_one()
    return int(batch_id)


def _finish_batch(
    conn: Connection, report: ImportReport, writer: AdmissionWriter, batch_id: int
) -> None:
    report.inserted, report.updated, report.unchanged = (
        writer.inserted,
        writer.updated,
        writer.unchanged,
    )
    report.events_added, report.persons_added = writer.events_added, writer.persons_added
    if not writer.changed:
        # Nothing changed: leave no trace, so the database is exactly as before.
        conn.execute(delete(BATCH).where(BATCH.c.id == batch_id))
        report.nothing_changed = True
        report.batch_id = None
        return
    conn.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id)
        .values(
            rows_read=report.rows_read,
            rows_inserted=report.inserted,
            rows_updated=report.updated,
            rows_unchanged=report.unchanged,
            rows_rejected=report.rejected,
        )
    )
    report.batch_id = batch_id
    with Session(bind=conn) as session:  # joins the import's transaction
        audit.append(
            session,
            audit.IMPORT,
            batch=batch_id,
            file=report.file[:255],
            source=report.source,
            profile=report.profile,
            rows_read=report.rows_read,
            inserted=report.inserted,
            updated=report.updated,
            unchanged=report.unchanged,
            rejected=report.rejected,
        )
