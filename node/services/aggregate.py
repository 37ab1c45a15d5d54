"""Compile a query spec into one bounded SQL aggregate (SQLAlchemy Core), and run it.

Nothing from the input ever becomes SQL text: dimension names select prebuilt column expressions,
and every value is a bound parameter. The statement is, in outline::

    base   admissions in the period with status 'sold', joined to person (and the PC4 table),
           filtered; each row gets a pseudo-random key r = (sample_key·A + salt) mod P, where
           sample_key is 31 bits of the row's own keyed ticket reference and salt comes from
           the public query id
    lvl1   rn = ROW_NUMBER() OVER (PARTITION BY person ORDER BY r, ticket_ref, source)
                                                                    -- keep rows with rn ≤ c
    lvl2   ck = MIN(rn) OVER (PARTITION BY person, cell)            -- only if needed
    lvl3   DENSE_RANK() OVER (PARTITION BY person ORDER BY ck)      -- keep cells ranked ≤ g
    final  GROUP BY cell: COUNT(*), COUNT(DISTINCT person), SUM(clamped price)

So every person contributes at most c rows in at most g cells, whatever the data (the bounds of
docs/explanation/privacy.md). Which rows and cells are kept depends only on that person's own rows
and the public query id — never on other people, nor on row ids, which depend on import order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.orm import Session

from node.storage.models import Admission, GeoPc4, Person
from protocol.catalogue import FREQUENCY_BANDS, UNKNOWN
from protocol.query import Measure, QuerySpec

# r = (sample_key · A + salt) mod P with prime P > 2^31 > any sample key: a bijection on sample
# keys; sample_key · A < 2^63, so the arithmetic fits a signed 64-bit integer on every engine.
_HASH_MULT = 2_654_435_761
_HASH_PRIME = 4_294_967_291

_A = Admission.__table__.c
_P = Person.__table__.c
_G = GeoPc4.__table__.c


def _coalesce(col: Any) -> ColumnElement[str]:
    return func.coalesce(col, literal(UNKNOWN))


def _first_visit() -> ColumnElement[str]:
    return case(
        (_P.first_seen.is_(None), literal(UNKNOWN)),
        (_A.event_date == _P.first_seen, literal("yes")),
        else_=literal("no"),
    )


# Row-level dimension expressions. visit_frequency is per person and handled separately.
_DIMENSION_SQL: Mapping[str, Callable[[], ColumnElement[Any]]] = {
    "month": lambda: _A.event_month,
    "quarter": lambda: _A.event_quarter,
    "year": lambda: _A.event_year,
    "weekday": lambda: _A.weekday,
    "artform": lambda: _A.artform,
    "age_band": lambda: _A.age_band,
    "price_type": lambda: _A.price_type,
    "channel": lambda: _A.channel,
    "lead_time": lambda: _A.lead_time,
    "pc4": lambda: _coalesce(_P.pc4),
    "segment": lambda: _P.segment,
    "municipality": lambda: _coalesce(_G.municipality_code),
    "province": lambda: _coalesce(_G.province),
    "first_visit": _first_visit,
}
_NEEDS_GEO = {"municipality", "province"}
_NEEDS_PERSON = {"pc4", "segment", "first_visit", *_NEEDS_GEO}
FREQUENCY = "visit_frequency"


def query_salt(query_id: str) -> int:
    return int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:4], "big") % _HASH_PRIME


def _frequency_band(count: ColumnElement[int]) -> ColumnElement[str]:
    whens = [(count >= low, literal(code)) for low, code in FREQUENCY_BANDS]
    return case(*whens, else_=literal(UNKNOWN))


def build_statement(spec: QuerySpec, dialect: str | None = None) -> Select[Any]:
    """The bounded aggregate for ``spec``: one row per non-empty cell, columns d0…dk, measures.

    ``dialect`` only chooses between equivalent forms. On PostgreSQL, ``persons`` is the number
    of kept rows that hold their person's smallest rank in the cell (one per person and cell):
    COUNT(DISTINCT) would force a sort of all kept rows by the cell's text columns, whereas this
    lets the final GROUP BY hash into the few cells. SQLite has no hash aggregate and no
    incremental sort, so there COUNT(DISTINCT) is the cheaper form.
    """
    dims = list(spec.group_by)
    used = set(dims) | set(spec.filters)
    bounds = spec.bounds
    c = bounds.max_visits_per_person
    g = bounds.effective_cells_per_person

    source: Any = Admission.__table__
    if used & _NEEDS_PERSON:
        source = source.join(Person.__table__, _A.person_id == _P.id)
    if used & _NEEDS_GEO:
        source = source.outerjoin(GeoPc4.__table__, _P.pc4 == _G.pc4)

    conditions: list[ColumnElement[bool]] = [
        _A.event_date >= spec.period.start,
        _A.event_date <= spec.period.end,
        _A.status == "sold",
    ]
    restrictions = restricted_domains(spec)
    for name, codes in restrictions.items():
        if name != FREQUENCY:
            conditions.append(_DIMENSION_SQL[name]().in_(codes))

    lo, hi = bounds.revenue_min_cents, bounds.revenue_max_cents
    revenue = case(
        (_A.price_cents < lo, literal(lo)), (_A.price_cents > hi, literal(hi)), else_=_A.price_cents
    )
    rkey = (_A.sample_key * literal(_HASH_MULT) + literal(query_salt(spec.query_id))) % literal(
        _HASH_PRIME
    )

    columns: list[ColumnElement[Any]] = [
        _A.person_id.label("pid"),
        rkey.label("rk"),
        _A.ticket_ref.label("tr"),
        _A.source.label("src"),
        revenue.label("rev"),
    ]
    for i, name in enumerate(dims):
        if name != FREQUENCY:
            columns.append(_DIMENSION_SQL[name]().label(f"d{i}"))
    if FREQUENCY in used:
        visits_in_period = func.count().over(partition_by=_A.person_id)
        columns.append(_frequency_band(visits_in_period).label("freq"))
    base = select(*columns).select_from(source).where(and_(*conditions)).subquery("base")

    def dim_col(sub: Any, i: int, name: str) -> Any:
        return sub.c.freq if name == FREQUENCY else sub.c[f"d{i}"]

    lvl1_cols = [base.c.pid, base.c.rev]
    lvl1_cols += [dim_col(base, i, n).label(f"d{i}") for i, n in enumerate(dims)]
    # Ties in r (two of one person's rows with the same sample key) are broken by the row's own
    # unique (ticket_ref, source), so the order never depends on anything but the person's rows.
    rn = (
        func.row_number()
        .over(partition_by=base.c.pid, order_by=[base.c.rk, base.c.tr, base.c.src])
        .label("rn")
    )
    lvl1_query = select(*lvl1_cols, rn)
    if FREQUENCY in restrictions:
        lvl1_query = lvl1_query.where(base.c.freq.in_(restrictions[FREQUENCY]))
    lvl1 = lvl1_query.subquery("lvl1")
    dim_cols = [lvl1.c[f"d{i}"] for i in range(len(dims))]

    flag_persons = dialect == "postgresql" and Measure.PERSONS in spec.measures
    final_source: Any = lvl1
    keep: ColumnElement[bool] | None = lvl1.c.rn <= c
    if (dims and g < c) or flag_persons:
        cell_min = func.min(lvl1.c.rn).over(partition_by=[lvl1.c.pid, *dim_cols]).label("ck")
        carried = [lvl1.c.rn] if flag_persons else []
        lvl2 = (
            select(lvl1.c.pid, *carried, lvl1.c.rev, *dim_cols, cell_min).where(lvl1.c.rn <= c)
        ).subquery("lvl2")
        final_source, keep = lvl2, None
        if dims and g < c:
            cell_rank = func.dense_rank().over(partition_by=lvl2.c.pid, order_by=lvl2.c.ck)
            lvl3 = select(
                lvl2.c.pid,
                lvl2.c.rev,
                *[lvl2.c[f"d{i}"] for i in range(len(dims))],
                *([lvl2.c.rn, lvl2.c.ck] if flag_persons else []),
                cell_rank.label("cr"),
            ).subquery("lvl3")
            final_source, keep = lvl3, lvl3.c.cr <= g

    group_cols = [final_source.c[f"d{i}"] for i in range(len(dims))]
    aggregates: list[ColumnElement[Any]] = []
    for measure in spec.measures:
        if measure is Measure.VISITS:
            aggregates.append(func.count().label("visits"))
        elif measure is Measure.PERSONS and flag_persons:
            first = case((final_source.c.rn == final_source.c.ck, 1), else_=0)
            aggregates.append(func.coalesce(func.sum(first), 0).label("persons"))
        elif measure is Measure.PERSONS:
            aggregates.append(func.count(final_source.c.pid.distinct()).label("persons"))
        else:
            aggregates.append(func.coalesce(func.sum(final_source.c.rev), 0).label("revenue"))
    statement = select(*group_cols, *aggregates)
    if keep is not None:
        statement = statement.where(keep)
    if group_cols:
        statement = statement.group_by(*group_cols)
    return statement


def restricted_domains(spec: QuerySpec) -> dict[str, tuple[str, ...]]:
    """The value lists that restrict rows: filters, and explicit domains of group-by dimensions."""
    restrictions = dict(spec.filters)
    for name in spec.group_by:
        if name in spec.domains:
            restrictions[name] = spec.domain(name)
    return restrictions


def run_aggregate(session: Session, spec: QuerySpec) -> dict[Measure, list[int]]:
    """Exact bounded values per measure, in the spec's canonical cell order (empty cells are 0).

    A stored code outside the public domain (possible only in a damaged database, since imports
    map unknown source values to ``unknown``) is dropped: removing contributions never raises a
    sensitivity, whereas merging cells could put one person twice into a ``persons`` cell.
    """
    index = {cell: i for i, cell in enumerate(spec.cells())}
    values = {m: [0] * len(index) for m in spec.measures}
    width = len(spec.group_by)
    dialect = session.get_bind().dialect.name
    postgres = dialect == "postgresql"
    if postgres:
        # PARTITION BY person_id tempts the planner into a full index scan of
        # ix_admission_person_id: one random heap access per row, 1.6x (1M rows) to 2.2x (10M)
        # slower than a sequential scan and sort (bench/RESULTS.md). Bitmap scans stay allowed,
        # so a short period still uses the date index. Only for this statement and transaction.
        session.execute(text("SET LOCAL enable_indexscan = off"))
    rows = session.execute(build_statement(spec, dialect)).all()
    if postgres:
        session.execute(text("SET LOCAL enable_indexscan = DEFAULT"))
    for row in rows:
        position = index.get(tuple(str(v) for v in row[:width]))
        if position is None:
            continue
        for offset, measure in enumerate(spec.measures):
            values[measure][position] = int(row[width + offset])
    return values
