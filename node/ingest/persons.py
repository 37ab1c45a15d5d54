"""The person table during an import: one row per pseudonym, with PC4, segment and first visit.

:class:`PersonBook` folds the parsed rows into one state per pseudonym; it runs where the rows are
parsed (for a large file: the reader helper process). :class:`PersonWriter` inserts each person
new to the database when a chunk first mentions them, and at the end updates every person whose
PC4, segment or first-seen date changed. The rules, deterministic whatever the order of the rows:

* PC4 and segment come from the person's row with the latest order date that has a known value
  (rows without an order date count as oldest; among equal dates the later row wins). A value
  already in the database is replaced only if that row is not older than the person's latest
  order from earlier imports.
* ``first_seen`` is the earliest event date of the person's sold admissions: the earlier of the
  stored value and this file's. When an admission of the person changed (a refund, another event
  date), it is recomputed from the database instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import cast

from sqlalchemy import Connection, Table, bindparam, func, select, update

from node.ingest.bulk import IdAllocator, chunks, insert_sql
from node.ingest.events import EventInfo
from node.ingest.transform import Row
from node.storage.models import Admission, Person
from protocol.catalogue import UNKNOWN

ADMISSION = cast(Table, Admission.__table__)
PERSON = cast(Table, Person.__table__)
PERSON_COLUMNS = ("id", "pseudonym", "pc4", "segment", "first_seen")
NO_DATE = ""  # order dates are ISO text here; the empty text sorts before every date

# What a file says about one person: (pseudonym, PC4, order date of the PC4, segment, order date
# of the segment, first sold visit).
Facts = tuple[str, str | None, str, str, str, date | None]
Stored = tuple[str | None, str, date | None]


class PersonBook:
    """Per-person facts folded from the rows of one file (no database)."""

    def __init__(self) -> None:
        # pseudonym -> [pc4, pc4 order date, segment, segment order date, first sold visit]
        self.states: dict[str, list[object]] = {}

    def observe(self, rows: Iterable[Row], events: Sequence[EventInfo]) -> list[Facts]:
        """Fold rows in; the facts of the persons first seen in these rows."""
        states = self.states
        new: list[str] = []
        for row in rows:
            key = row[2]
            state = states.get(key)
            if state is None:
                state = states[key] = [None, NO_DATE, UNKNOWN, NO_DATE, None]
                new.append(key)
            ordered = row[4] or NO_DATE
            area = row[12]
            if area is not None and ordered >= state[1]:  # type: ignore[operator]
                state[0], state[1] = area, ordered
            segment = row[13]
            if segment != UNKNOWN and ordered >= state[3]:  # type: ignore[operator]
                state[2], state[3] = segment, ordered
            if row[9] == "sold":
                day = events[row[3]].day
                first = state[4]
                if first is None or day < first:  # type: ignore[operator]
                    state[4] = day
        return [self.facts_of(key) for key in new]

    def facts_of(self, key: str) -> Facts:
        return cast(Facts, (key, *self.states[key]))

    def all_facts(self) -> list[Facts]:
        return [self.facts_of(key) for key in self.states]


def _earlier(a: date | None, b: date | None) -> date | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class PersonWriter:
    """Keeps the person table in step with one import batch."""

    def __init__(self, conn: Connection, batch_id: int, ids: IdAllocator) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.ids = ids
        self.sqlite = conn.dialect.name == "sqlite"
        self.id_of: dict[str, int] = {}
        self.stored: dict[str, Stored] = {}  # what the database holds, per pseudonym
        self.existing: set[str] = set()  # persons that were in the database before
        self.added = self.updated = 0
        # Persons whose first_seen is recomputed from the database at the end.
        self.recompute: set[int] = set()
        self._may_exist = conn.execute(select(PERSON.c.id).limit(1)).first() is not None
        self._insert = insert_sql(conn, PERSON, PERSON_COLUMNS)

    def write(self, new: Sequence[Facts]) -> None:
        """Give ids to persons first seen in a chunk; insert those new to the database."""
        if not new:
            return
        by_key = {facts[0]: facts for facts in new}
        if self._may_exist:
            for keys in chunks(list(by_key)):
                query = select(*(PERSON.c[name] for name in PERSON_COLUMNS))
                for found in self.conn.execute(query.where(PERSON.c.pseudonym.in_(keys))):
                    self.id_of[found.pseudonym] = found.id
                    self.stored[found.pseudonym] = (found.pc4, found.segment, found.first_seen)
                    self.existing.add(found.pseudonym)
                    del by_key[found.pseudonym]
        fresh = sorted(by_key)  # fill the pseudonym index in order
        values = []
        for key, new_id in zip(fresh, self.ids.take(PERSON, len(fresh)), strict=True):
            _, pc4, _, segment, _, first = by_key[key]
            self.id_of[key] = new_id
            self.stored[key] = (pc4, segment, first)
            bound = first.isoformat() if first is not None and self.sqlite else first
            values.append((new_id, key, pc4, segment, bound))
        if values:
            self.conn.exec_driver_sql(self._insert, values)
            self.added += len(values)

    def finish(self, final: Iterable[Facts]) -> None:
        """Update every person whose PC4, segment or first_seen changed; call once, last."""
        later: list[Facts] = []
        changes: list[dict[str, object]] = []
        for facts in final:
            key, pc4, _, segment, _, first = facts
            old_pc4, old_segment, old_first = stored = self.stored[key]
            existing = key in self.existing
            if existing and (
                (pc4 is not None and old_pc4 is not None and pc4 != old_pc4)
                or (segment != UNKNOWN and old_segment != UNKNOWN and segment != old_segment)
            ):
                later.append(facts)  # a known value would change: compare with older orders
                continue
            result = (
                pc4 if pc4 is not None else old_pc4,
                segment if segment != UNKNOWN else old_segment,
                _earlier(old_first, first) if existing else first,
            )
            if result != stored:
                changes.append(self._change(key, result))
        if later:
            latest = self._latest_orders([self.id_of[facts[0]] for facts in later])
            for key, pc4, pc4_at, segment, segment_at, first in later:
                old_pc4, old_segment, old_first = stored = self.stored[key]
                before = latest.get(self.id_of[key], NO_DATE)
                result = (
                    pc4 if pc4 is not None and pc4_at >= before else old_pc4,
                    segment if segment != UNKNOWN and segment_at >= before else old_segment,
                    _earlier(old_first, first),
                )
                if result != stored:
                    changes.append(self._change(key, result))
        if changes:
            statement = (
                update(PERSON)
                .where(PERSON.c.id == bindparam("_id"))
                .values(
                    pc4=bindparam("pc4"),
                    segment=bindparam("segment"),
                    first_seen=bindparam("first_seen"),
                )
            )
            self.conn.execute(statement, changes)
            self.updated += len(changes)
        self._recompute_first_seen()

    def _change(self, key: str, result: Stored) -> dict[str, object]:
        self.stored[key] = result
        return {"_id": self.id_of[key], "pc4": result[0], "segment": result[1],
                "first_seen": result[2]}  # fmt: skip

    def _latest_orders(self, ids: list[int]) -> dict[int, str]:
        """The latest order date (ISO) per person among admissions this import did not write."""
        latest: dict[int, str] = {}
        for chunk in chunks(ids):
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
        earliest = (
            select(func.min(ADMISSION.c.event_date))
            .where(ADMISSION.c.person_id == PERSON.c.id, ADMISSION.c.status == "sold")
            .scalar_subquery()
        )
        for chunk in chunks(sorted(self.recompute)):
            statement = update(PERSON).where(PERSON.c.id.in_(chunk)).values(first_seen=earliest)
            self.conn.execute(statement)
