"""Writing parsed rows to the node database in bulk: events, persons and admissions.

Everything happens inside the caller's transaction, one chunk of rows at a time:

* events and persons are deduplicated in memory; new ones get their ids up front (see
  :class:`~node.ingest.bulk.IdAllocator`), so no insert needs RETURNING;
* admissions are inserted with one ``executemany`` per chunk, sorted by ticket reference so the
  unique index is filled in order. When the source has no admissions yet, the chunk goes straight
  in; the unique index (inside a savepoint) catches a ticket id that appears twice in the file.
  Otherwise the chunk's existing tickets are loaded in bulk and compared: changed ones are
  updated (a refund in a later export), equal ones are left alone;
* at the end, persons' PC4, segment and first-seen date are brought up to date
  (:mod:`node.ingest.persons`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, Index, Table, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from node.identity import sample_key
from node.ingest.bulk import IdAllocator, check_dialect, chunks, insert_sql, marker
from node.ingest.errors import IngestError
from node.ingest.events import DETAIL_COLUMNS, EventInfo
from node.ingest.parsing import lead_time_of
from node.ingest.persons import Facts, PersonWriter
from node.ingest.report import Reject
from node.ingest.transform import Row
from node.storage.models import Admission, Event
from protocol.catalogue import UNKNOWN

BULK_LOAD_MIN_ROWS = 50_000
ADMISSION = cast(Table, Admission.__table__)
EVENT = cast(Table, Event.__table__)
ADMISSION_COLUMNS = (
    "source", "ticket_ref", "person_id", "event_id", "batch_id", "event_date", "event_month",
    "event_quarter", "event_year", "weekday", "artform", "ordered_date", "lead_time",
    "price_cents", "price_type", "channel", "status", "attended", "age_band", "sample_key",
)  # fmt: skip
# The columns compared to decide whether a known ticket changed: all but the keys, the batch and
# the sample key (a function of ticket_ref, so it never changes).
COMPARED = ADMISSION_COLUMNS[2:4] + ADMISSION_COLUMNS[5:-1]
_STATUS = COMPARED.index("status")
_compared = itemgetter(*(ADMISSION_COLUMNS.index(name) for name in COMPARED))


class AdmissionWriter:
    """Writes chunks of parsed rows for one import batch on one connection."""

    def __init__(
        self,
        conn: Connection,
        *,
        source: str,
        batch_id: int,
        file_name: str = "",
        ticket_column: str = "ticket_id",
    ) -> None:
        check_dialect(conn)
        self.conn = conn
        self.source = source
        self.batch_id = batch_id
        self.file_name = file_name
        self.ticket_column = ticket_column
        self.sqlite = conn.dialect.name == "sqlite"
        self.ids = IdAllocator(conn)
        self.persons = PersonWriter(conn, batch_id, self.ids)
        self.inserted = self.updated = self.unchanged = 0
        self.events_added = self.events_updated = 0
        self.rejects: list[Reject] = []
        self.events: list[EventInfo] = []
        self.changed_events: list[EventInfo] = []
        self._unsaved_events: list[EventInfo] = []
        self._touched: set[int] = set()
        self._dropped: list[Index] = []
        self._date_binds: dict[str, object] = {}
        exists = select(ADMISSION.c.id).where(ADMISSION.c.source == source).limit(1)
        self._fresh = conn.execute(exists).first() is None
        exists = select(EVENT.c.id).where(EVENT.c.source == source).limit(1)
        self._events_may_exist = conn.execute(exists).first() is not None
        self._insert_sql = insert_sql(conn, ADMISSION, ADMISSION_COLUMNS)
        mark, prep = marker(conn), conn.dialect.identifier_preparer
        table = prep.format_table(ADMISSION)
        # Identifiers come from the table metadata, quoted by the dialect; values are bound.
        selected = ", ".join(prep.quote(c) for c in ("id", "ticket_ref", "batch_id", *COMPARED))
        where = f"{prep.quote('source')} = {mark} AND {prep.quote('ticket_ref')} IN ("
        self._select_sql = f"SELECT {selected} FROM {table} WHERE {where}"  # noqa: S608
        assignments = ", ".join(f"{prep.quote(c)} = {mark}" for c in (*COMPARED, "batch_id"))
        key = f"{prep.quote('id')} = {mark}"
        self._update_sql = f"UPDATE {table} SET {assignments} WHERE {key}"  # noqa: S608

    @property
    def persons_added(self) -> int:
        return self.persons.added

    @property
    def changed(self) -> bool:
        """Whether this import changed anything in the database."""
        return bool(
            self.inserted
            or self.updated
            or self.events_added
            or self.events_updated
            or self.persons.added
            or self.persons.updated
        )

    def prepare_bulk_load(self, expected_rows: int | None) -> None:
        """Before a large load into SQLite, drop the admission table's secondary indexes; they
        are rebuilt in :meth:`finish` (one sort instead of a million B-tree inserts). This stays
        inside the import's transaction: readers keep seeing the old, indexed snapshot, and a
        failed import restores them with everything else. Not done when the table already
        holds more rows than the file (rebuilding would cost more than it saves)."""
        if not self.sqlite or expected_rows is None or expected_rows < BULK_LOAD_MIN_ROWS:
            return
        highest = self.conn.execute(select(func.max(ADMISSION.c.id))).scalar() or 0
        if highest > expected_rows:
            return
        for index in sorted(ADMISSION.indexes, key=lambda ix: str(ix.name)):
            if not index.unique:
                index.drop(self.conn)
                self._dropped.append(index)

    def add_events(self, events: Iterable[EventInfo]) -> None:
        """Register events first seen by the parser; their numbers must follow on."""
        for ev in events:
            if ev.number != len(self.events):
                raise IngestError("internal error: events arrived out of order")
            self.events.append(ev)
            self._unsaved_events.append(ev)

    def write(self, rows: Sequence[Row], persons: Sequence[Facts]) -> None:
        """Write one chunk: the events registered with :meth:`add_events`, the persons first
        seen in it (with what the file says about them so far), and its rows."""
        self._write_events()
        self.persons.write(persons)
        self._write_admissions(rows)

    def finish(self, persons: Iterable[Facts]) -> None:
        """Rebuild dropped indexes, bring events' admissions and persons up to date (with every
        person's final facts); call once, after the last chunk."""
        for index in self._dropped:
            index.create(self.conn)
        self._dropped.clear()
        self._refresh_changed_events()
        self.persons.finish(persons)

    # -- events -----------------------------------------------------------------------------------

    def _write_events(self) -> None:
        new, self._unsaved_events = self._unsaved_events, []
        if not new:
            return
        if self._events_may_exist:
            by_key = {ev.key: ev for ev in new}
            columns = [EVENT.c[name] for name in ("id", "event_key", *DETAIL_COLUMNS)]
            for keys in chunks(list(by_key)):
                query = select(*columns).where(
                    EVENT.c.source == self.source, EVENT.c.event_key.in_(keys)
                )
                for found in self.conn.execute(query):
                    ev = by_key[found.event_key]
                    ev.id = found.id
                    self._set_columns(ev)
                    if tuple(found[2:]) != ev.details():
                        self.conn.execute(
                            update(EVENT).where(EVENT.c.id == ev.id).values(self._event_values(ev))
                        )
                        self.events_updated += 1
                        self.changed_events.append(ev)
            new = [ev for ev in new if ev.id is None]
        for ev, new_id in zip(new, self.ids.take(EVENT, len(new)), strict=True):
            ev.id = new_id
            self._set_columns(ev)
        if new:
            self.conn.execute(
                EVENT.insert(), [{"id": ev.id, **self._event_values(ev)} for ev in new]
            )
            self.events_added += len(new)

    def _set_columns(self, ev: EventInfo) -> None:
        day = ev.day.isoformat() if self.sqlite else ev.day
        ev.columns = (ev.id, self.batch_id, day, ev.month, ev.quarter, ev.year, ev.weekday,
                      ev.artform)  # fmt: skip

    def _event_values(self, ev: EventInfo) -> dict[str, object]:
        details = dict(zip(DETAIL_COLUMNS, ev.details(), strict=True))
        return {"source": self.source, "event_key": ev.key, **details}

    def _refresh_changed_events(self) -> None:
        """Admissions of events whose date or artform changed, also those of earlier files."""
        for ev in self.changed_events:
            self.conn.execute(
                update(ADMISSION)
                .where(ADMISSION.c.event_id == ev.id)
                .values(event_date=ev.day, event_month=ev.month, event_quarter=ev.quarter,
                        event_year=ev.year, weekday=ev.weekday, artform=ev.artform)
            )  # fmt: skip
            query = select(ADMISSION.c.id, ADMISSION.c.ordered_date, ADMISSION.c.person_id)
            found = self.conn.execute(query.where(ADMISSION.c.event_id == ev.id)).all()
            leads = [{"_id": r.id, "lead_time": _lead(ev.day, r.ordered_date)} for r in found]
            if leads:
                statement = (
                    update(ADMISSION)
                    .where(ADMISSION.c.id == bindparam("_id"))
                    .values(lead_time=bindparam("lead_time"))
                )
                self.conn.execute(statement, leads)
            self.persons.recompute.update(int(r.person_id) for r in found)

    # -- admissions -------------------------------------------------------------------------------

    def _write_admissions(self, rows: Sequence[Row]) -> None:
        person_id, events, source = self.persons.id_of, self.events, self.source
        if self.sqlite:  # the row's ISO order date is already what SQLite stores
            values = [
                (source, row[1], person_id[row[2]], *events[row[3]].columns, *row[4:12],
                 sample_key(row[1]))
                for row in rows
            ]  # fmt: skip
        else:
            bind = self._bind_iso
            values = [
                (source, row[1], person_id[row[2]], *events[row[3]].columns,
                 None if row[4] is None else bind(row[4]), *row[5:12], sample_key(row[1]))
                for row in rows
            ]  # fmt: skip
        if self._fresh:
            try:
                with self.conn.begin_nested():
                    self._insert_admissions(sorted(values, key=itemgetter(1)))
                self.inserted += len(values)
                return
            except IntegrityError:
                pass  # a ticket id appears twice in the file: sort it out row by row below
        self._merge_admissions(values, [row[0] for row in rows])

    def _bind_iso(self, text: str) -> object:
        bound = self._date_binds.get(text)
        if bound is None:
            bound = self._date_binds[text] = date.fromisoformat(text)
        return bound

    def _insert_admissions(self, values: list[tuple[Any, ...]]) -> None:
        if values:
            self.conn.exec_driver_sql(self._insert_sql, values)

    def _duplicate(self, line: int, reason: str) -> None:
        self.rejects.append(Reject(self.file_name, line, self.ticket_column, reason))

    def _merge_admissions(self, values: list[tuple[Any, ...]], lines: list[int]) -> None:
        """Insert new tickets, update changed ones, count unchanged ones.

        Existing rows are read and compared in the driver's own types (ISO text dates on
        SQLite), the same form the insert tuples have, so the comparison is a tuple equality."""
        existing: dict[str, tuple[Any, ...]] = {}
        mark = marker(self.conn)
        for chunk in chunks([v[1] for v in values]):
            sql = self._select_sql + ", ".join([mark] * len(chunk)) + ")"
            for found in self.conn.exec_driver_sql(sql, (self.source, *chunk)):
                existing[found[1]] = tuple(found)
        fresh: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        first_line: dict[str, int] = {}
        for row, line in zip(values, lines, strict=True):
            earlier = first_line.setdefault(row[1], line)
            if earlier != line:
                self._duplicate(line, f"the same ticket id already appears on line {earlier}")
                self.persons.recompute.add(row[2])  # the rejected row was counted in first_seen
                continue
            stored = existing.get(row[1])
            if stored is None:
                fresh.append(row)
                continue
            found_id, batch_id, old = stored[0], stored[2], stored[3:]
            if batch_id == self.batch_id or found_id in self._touched:
                self._duplicate(line, "the same ticket id already appears earlier in this file")
                self.persons.recompute.add(row[2])
                continue
            self._touched.add(found_id)
            new = _compared(row)
            if new == old:
                self.unchanged += 1
                continue
            changes.append((*new, self.batch_id, found_id))
            if old[_STATUS] == "sold" or new[0] != old[0] or new[2] != old[2]:
                # The sold admissions of these persons changed: first_seen is recomputed.
                self.persons.recompute.update((int(old[0]), int(new[0])))
        fresh.sort(key=itemgetter(1))
        self._insert_admissions(fresh)
        self.inserted += len(fresh)
        if changes:
            self.conn.exec_driver_sql(self._update_sql, changes)
            self.updated += len(changes)


def _lead(day: date, ordered: date | None) -> str:
    return UNKNOWN if ordered is None else lead_time_of((day - ordered).days)
