"""Writing parsed rows to the node database in bulk: events, persons and admissions.

Everything happens inside the caller's transaction, one chunk of rows at a time:

* events and persons are deduplicated in memory; new ones get their ids up front (SQLite: the
  next rowids under the write lock the import holds; PostgreSQL: a block of sequence values),
  so no insert needs RETURNING;
* admissions are inserted with one ``executemany`` per chunk, sorted by ticket reference so the
  unique index is filled in order. When the source has no admissions yet, the chunk goes straight
  in; the unique index (inside a savepoint) catches a ticket id that appears twice in the file.
  Otherwise the chunk's existing tickets are loaded in bulk and compared: changed ones are
  updated (a refund in a later export), equal ones are left alone;
* at the end, each person's PC4, segment and first-seen date are brought up to date.

The inserts bypass SQLAlchemy's per-row parameter processing (about 6 µs a row, measured): the
statement is built from the table metadata and the values are converted to what the driver
expects once, when they are first seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Index, Table, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from node.ingest.errors import IngestError
from node.ingest.parsing import lead_time_of
from node.ingest.report import Reject
from node.ingest.transform import EventInfo, Row
from node.storage.models import Admission, Event, Person
from protocol.catalogue import UNKNOWN

LOOKUP_BATCH = 500
BULK_LOAD_MIN_ROWS = 50_000
NO_DATE = ""  # order dates are ISO text here; the empty text sorts before every date

ADMISSION = Admission.__table__
EVENT = Event.__table__
PERSON = Person.__table__
assert isinstance(ADMISSION, Table) and isinstance(EVENT, Table) and isinstance(PERSON, Table)

ADMISSION_COLUMNS = (
    "source", "ticket_ref", "person_id", "event_id", "batch_id", "event_date", "event_month",
    "event_quarter", "event_year", "weekday", "artform", "ordered_date", "lead_time",
    "price_cents", "price_type", "channel", "status", "attended", "age_band",
)  # fmt: skip
# The columns compared to decide whether a known ticket changed (all but the keys and batch).
COMPARED = ADMISSION_COLUMNS[2:4] + ADMISSION_COLUMNS[5:]
_STATUS = COMPARED.index("status")
_compared = itemgetter(*(ADMISSION_COLUMNS.index(name) for name in COMPARED))
PERSON_COLUMNS = ("id", "pseudonym", "pc4", "segment", "first_seen")


class PersonState:
    """What this import learns about one person, and what the database held before."""

    __slots__ = ("existing", "first_seen", "id", "pc4", "pc4_at", "segment", "segment_at", "stored")

    def __init__(self) -> None:
        self.id: int | None = None
        self.pc4: str | None = None
        self.pc4_at = NO_DATE
        self.segment = UNKNOWN
        self.segment_at = NO_DATE
        self.first_seen: date | None = None
        self.stored: tuple[str | None, str, date | None] = (None, UNKNOWN, None)
        self.existing = False


def _chunks(items: Sequence[Any], size: int = LOOKUP_BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _earlier(a: date | None, b: date | None) -> date | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


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
        self.conn = conn
        self.file_name = file_name
        self.ticket_column = ticket_column
        self.source = source
        self.batch_id = batch_id
        self.dialect = conn.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise IngestError(
                f"imports support SQLite and PostgreSQL databases, not {self.dialect}"
            )
        self.sqlite = self.dialect == "sqlite"
        self.inserted = self.updated = self.unchanged = 0
        self.events_added = self.events_updated = 0
        self.persons_added = self.persons_updated = 0
        self.rejects: list[Reject] = []
        self.persons: dict[str, PersonState] = {}
        self.events: list[EventInfo] = []
        self._unsaved_events: list[EventInfo] = []
        self.changed_events: list[EventInfo] = []
        self.recompute_first_seen: set[int] = set()
        self._touched: set[int] = set()
        self._dropped: list[Index] = []
        self._next_id: dict[str, int] = {}
        self._date_binds: dict[str, object] = {}
        self._fresh = conn.execute(
            select(ADMISSION.c.id).where(ADMISSION.c.source == source).limit(1)
        ).first() is None
        self._events_may_exist = conn.execute(
            select(EVENT.c.id).where(EVENT.c.source == source).limit(1)
        ).first() is not None
        self._persons_may_exist = conn.execute(select(PERSON.c.id).limit(1)).first() is not None
        self._marker = "?" if self.sqlite else "%s"
        self._admission_sql = self._insert_sql(ADMISSION, ADMISSION_COLUMNS)
        self._person_sql = self._insert_sql(PERSON, PERSON_COLUMNS)
        prep = conn.dialect.identifier_preparer
        table = prep.format_table(ADMISSION)
        selected = ", ".join(prep.quote(c) for c in ("id", "ticket_ref", "batch_id", *COMPARED))
        self._select_sql = (
            f"SELECT {selected} FROM {table} WHERE {prep.quote('source')} = {self._marker} "
            f"AND {prep.quote('ticket_ref')} IN ("
        )
        assignments = ", ".join(
            f"{prep.quote(c)} = {self._marker}" for c in (*COMPARED, "batch_id")
        )
        self._update_sql = (
            f"UPDATE {table} SET {assignments} WHERE {prep.quote('id')} = {self._marker}"
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _insert_sql(self, table: Table, columns: Sequence[str]) -> str:
        prep = self.conn.dialect.identifier_preparer
        names = ", ".join(prep.quote(c) for c in columns)
        values = ", ".join([self._marker] * len(columns))
        return f"INSERT INTO {prep.format_table(table)} ({names}) VALUES ({values})"

    def _bind_date(self, day: date | None) -> object:
        """A date as the driver stores it: ISO text for SQLite (as SQLAlchemy writes it)."""
        if day is None:
            return None
        return day.isoformat() if self.sqlite else day

    def _bind_iso(self, text: str) -> object:
        """An ISO date text as the driver stores it (cached: few distinct dates)."""
        bound = self._date_binds.get(text)
        if bound is None:
            bound = self._date_binds[text] = text if self.sqlite else date.fromisoformat(text)
        return bound

    def _allocate(self, table: Table, count: int) -> list[int]:
        """Ids for ``count`` new rows of ``table``."""
        if count == 0:
            return []
        if self.sqlite:
            # The import holds SQLite's write lock for its whole transaction: nobody else can
            # insert, so the next rowids are ours.
            if table.name not in self._next_id:
                highest = self.conn.execute(select(func.max(table.c.id))).scalar()
                self._next_id[table.name] = (highest or 0) + 1
            start = self._next_id[table.name]
            self._next_id[table.name] = start + count
            return list(range(start, start + count))
        rows = self.conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": count},
        )
        return sorted(int(r[0]) for r in rows)

    # -- one chunk ------------------------------------------------------------------------------

    def add_events(self, events: Iterable[EventInfo]) -> None:
        """Register events first seen by the parser; their numbers must follow on."""
        for ev in events:
            if ev.number != len(self.events):
                raise IngestError("internal error: events arrived out of order")
            self.events.append(ev)
            self._unsaved_events.append(ev)

    def write(self, rows: Sequence[Row]) -> None:
        self._write_events()
        self._write_persons(rows)
        self._write_admissions(rows)

    def _write_events(self) -> None:
        new, self._unsaved_events = self._unsaved_events, []
        if not new:
            return
        if self._events_may_exist:
            by_key = {ev.key: ev for ev in new}
            columns = [EVENT.c[name] for name in ("id", "event_key", *_EVENT_DETAILS)]
            for keys in _chunks(list(by_key)):
                query = select(*columns).where(
                    EVENT.c.source == self.source, EVENT.c.event_key.in_(keys)
                )
                for found in self.conn.execute(query):
                    ev = by_key[found.event_key]
                    ev.id = found.id
                    self._set_columns(ev)
                    if tuple(found[2:]) != ev.details():
                        self._update_event(ev)
            new = [ev for ev in new if ev.id is None]
        for ev, new_id in zip(new, self._allocate(EVENT, len(new)), strict=True):
            ev.id = new_id
            self._set_columns(ev)
        if new:
            self.conn.execute(
                EVENT.insert(), [{"id": ev.id, **self._event_values(ev)} for ev in new]
            )
            self.events_added += len(new)

    def _set_columns(self, ev: EventInfo) -> None:
        ev.columns = (
            ev.id, self.batch_id, self._bind_date(ev.day), ev.month, ev.quarter, ev.year,
            ev.weekday, ev.artform,
        )  # fmt: skip

    def _event_values(self, ev: EventInfo) -> dict[str, object]:
        return {
            "source": self.source,
            "event_key": ev.key,
            **dict(zip(_EVENT_DETAILS, ev.details(), strict=True)),
        }

    def _update_event(self, ev: EventInfo) -> None:
        self.conn.execute(update(EVENT).where(EVENT.c.id == ev.id).values(self._event_values(ev)))
        self.events_updated += 1
        self.changed_events.append(ev)

    def _write_persons(self, rows: Sequence[Row]) -> None:
        persons, events = self.persons, self.events
        new: list[str] = []
        for row in rows:
            key = row[2]
            state = persons.get(key)
            if state is None:
                state = persons[key] = PersonState()
                new.append(key)
            ordered = row[4] or NO_DATE
            area = row[12]
            if area is not None and ordered >= state.pc4_at:
                state.pc4, state.pc4_at = area, ordered
            segment = row[13]
            if segment != UNKNOWN and ordered >= state.segment_at:
                state.segment, state.segment_at = segment, ordered
            if row[9] == "sold":
                day = events[row[3]].day
                if state.first_seen is None or day < state.first_seen:
                    state.first_seen = day
        if not new:
            return
        if self._persons_may_exist:
            for keys in _chunks(new):
                query = select(*(PERSON.c[name] for name in PERSON_COLUMNS)).where(
                    PERSON.c.pseudonym.in_(keys)
                )
                for found in self.conn.execute(query):
                    state = persons[found.pseudonym]
                    state.id, state.existing = found.id, True
                    state.stored = (found.pc4, found.segment, found.first_seen)
            new = [key for key in new if persons[key].id is None]
        new.sort()
        values = []
        for key, new_id in zip(new, self._allocate(PERSON, len(new)), strict=True):
            state = persons[key]
            state.id = new_id
            state.stored = (state.pc4, state.segment, state.first_seen)
            values.append((new_id, key, state.pc4, state.segment, self._bind_date(state.first_seen)))
        if values:
            self.conn.exec_driver_sql(self._person_sql, values)
            self.persons_added += len(values)

    def _write_admissions(self, rows: Sequence[Row]) -> None:
        persons, events, source = self.persons, self.events, self.source
        binds, bind_iso = self._date_binds, self._bind_iso
        seen: dict[str, int] = {}
        values: list[tuple[Any, ...]] = []
        lines: list[int] = []
        for row in rows:
            line, tref, ordered = row[0], row[1], row[4]
            first = seen.get(tref)
            if first is not None:
                self._duplicate(line, f"the same ticket id already appears on line {first}")
                continue
            seen[tref] = line
            if ordered is not None:
                bound = binds.get(ordered)
                ordered = bound if bound is not None else bind_iso(ordered)
            values.append(
                (source, tref, persons[row[2]].id)
                + events[row[3]].columns
                + (ordered, row[5], row[6], row[7], row[8], row[9], row[10], row[11])
            )
            lines.append(line)
        if self._fresh:
            try:
                with self.conn.begin_nested():
                    self._insert_admissions(sorted(values, key=itemgetter(1)))
                self.inserted += len(values)
                return
            except IntegrityError:
                pass  # a ticket id seen in an earlier chunk: sort it out row by row below
        self._merge_admissions(values, lines)

    def _insert_admissions(self, values: list[tuple[Any, ...]]) -> None:
        if values:
            self.conn.exec_driver_sql(self._admission_sql, values)

    def _duplicate(self, line: int, reason: str) -> None:
        self.rejects.append(Reject(self.file_name, line, self.ticket_column, reason))

    def _merge_admissions(self, values: list[tuple[Any, ...]], lines: list[int]) -> None:
        """Insert new tickets, update changed ones, count unchanged ones.

        Existing rows are read and compared in the driver's own types (ISO text dates on
        SQLite), the same form the insert tuples have, so the comparison is a tuple equality."""
        existing: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks([v[1] for v in values]):
            sql = self._select_sql + ", ".join([self._marker] * len(chunk)) + ")"
            for found in self.conn.exec_driver_sql(sql, (self.source, *chunk)):
                existing[found[1]] = tuple(found)
        fresh: list[tuple[Any, ...]] = []
        changes: list[tuple[Any, ...]] = []
        for row, line in zip(values, lines, strict=True):
            found = existing.get(row[1])
            if found is None:
                fresh.append(row)
                continue
            found_id, batch_id, old = found[0], found[2], found[3:]
            if batch_id == self.batch_id or found_id in self._touched:
                self._duplicate(line, "the same ticket id already appears earlier in this file")
                continue
            self._touched.add(found_id)
            new = _compared(row)
            if new == old:
                self.unchanged += 1
                continue
            changes.append((*new, self.batch_id, found_id))
            if old[_STATUS] == "sold" or new[0] != old[0] or new[2] != old[2]:
                # The sold admissions of these persons changed: first_seen is recomputed.
                self.recompute_first_seen.update((int(old[0]), int(new[0])))
        fresh.sort(key=itemgetter(1))
        self._insert_admissions(fresh)
        self.inserted += len(fresh)
        if changes:
            self.conn.exec_driver_sql(self._update_sql, changes)
            self.updated += len(changes)

    # -- the end ----------------------------------------------------------------------------------

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

    def finish(self) -> None:
        """Bring events' admissions and persons up to date; call once, after the last chunk."""
        for index in self._dropped:
            index.create(self.conn)
        self._dropped.clear()
        self._refresh_changed_events()
        self._update_persons()

    def _refresh_changed_events(self) -> None:
        for ev in self.changed_events:
            self.conn.execute(
                update(ADMISSION)
                .where(ADMISSION.c.event_id == ev.id)
                .values(
                    event_date=ev.day, event_month=ev.month, event_quarter=ev.quarter,
                    event_year=ev.year, weekday=ev.weekday, artform=ev.artform,
                )
            )  # fmt: skip
            query = select(ADMISSION.c.id, ADMISSION.c.ordered_date, ADMISSION.c.person_id)
            found = self.conn.execute(query.where(ADMISSION.c.event_id == ev.id)).all()
            leads = [
                {"_id": r.id, "lead_time": _lead(ev.day, r.ordered_date)} for r in found
            ]
            if leads:
                self.conn.execute(
                    update(ADMISSION)
                    .where(ADMISSION.c.id == bindparam("_id"))
                    .values(lead_time=bindparam("lead_time")),
                    leads,
                )
            self.recompute_first_seen.update(int(r.person_id) for r in found)

    def _update_persons(self) -> None:
        later: list[PersonState] = []
        changes: list[dict[str, object]] = []
        for state in self.persons.values():
            pc4, segment, first_seen = state.stored
            if state.existing and (
                (state.pc4 is not None and pc4 is not None and state.pc4 != pc4)
                or (state.segment != UNKNOWN and segment != UNKNOWN and state.segment != segment)
            ):
                later.append(state)
                continue
            final = (
                state.pc4 if state.pc4 is not None else pc4,
                state.segment if state.segment != UNKNOWN else segment,
                _earlier(first_seen, state.first_seen) if state.existing else state.first_seen,
            )
            if final != state.stored:
                changes.append(self._person_change(state, final))
        if later:
            latest = self._latest_orders([s.id for s in later if s.id is not None])
            for state in later:
                pc4, segment, first_seen = state.stored
                before = latest.get(state.id or 0, NO_DATE)
                final = (
                    state.pc4 if state.pc4 is not None and state.pc4_at >= before else pc4,
                    state.segment
                    if state.segment != UNKNOWN and state.segment_at >= before
                    else segment,
                    _earlier(first_seen, state.first_seen),
                )
                if final != state.stored:
                    changes.append(self._person_change(state, final))
        if changes:
            self.conn.execute(
                update(PERSON)
                .where(PERSON.c.id == bindparam("_id"))
                .values(
                    pc4=bindparam("pc4"),
                    segment=bindparam("segment"),
                    first_seen=bindparam("first_seen"),
                ),
                changes,
            )
            self.persons_updated += len(changes)
        self._recompute_first_seen()

    @staticmethod
    def _person_change(
        state: PersonState, final: tuple[str | None, str, date | None]
    ) -> dict[str, object]:
        state.stored = final
        return {"_id": state.id, "pc4": final[0], "segment": final[1], "first_seen": final[2]}

    def _latest_orders(self, ids: list[int]) -> dict[int, str]:
        """The latest order date (ISO) per person among admissions this import did not write."""
        latest: dict[int, str] = {}
        for chunk in _chunks(ids):
            query = (
                select(ADMISSION.c.person_id, func.max(ADMISSION.c.ordered_date))
                .where(ADMISSION.c.person_id.in_(chunk), ADMISSION.c.batch_id != self.batch_id)
                .group_by(ADMISSION.c.person_id)
            )
            for person_id, day in self.conn.execute(query):
                if day is not None:
                    latest[int(person_id)] = day.isoformat()
        return latest

    def _recompute_first_seen(self) -> None:
        """Persons whose sold admissions changed: first_seen from the database, exactly."""
        ids = sorted(self.recompute_first_seen)
        earliest = (
            select(func.min(ADMISSION.c.event_date))
            .where(ADMISSION.c.person_id == PERSON.c.id, ADMISSION.c.status == "sold")
            .scalar_subquery()
        )
        for chunk in _chunks(ids):
            statement = update(PERSON).where(PERSON.c.id.in_(chunk)).values(first_seen=earliest)
            self.conn.execute(statement)

    @property
    def changed(self) -> bool:
        return bool(
            self.inserted
            or self.updated
            or self.events_added
            or self.events_updated
            or self.persons_added
            or self.persons_updated
        )


_EVENT_DETAILS = (
    "title", "production", "artform", "venue", "hall", "starts_at", "capacity", "is_free",
)  # fmt: skip


def _lead(day: date, ordered: date | None) -> str:
    return UNKNOWN if ordered is None else lead_time_of((day - ordered).days)
