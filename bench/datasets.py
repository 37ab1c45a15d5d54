"""Synthetic node datasets for benchmarks, written in bulk straight into a migrated node database.

``generate(rows, seed)`` draws a realistic year of admissions with numpy (everything follows from
the seed, so the SQLite file, the PostgreSQL schema and the Parquet export hold identical rows):

* about rows/4.5 persons with heavy-tailed visit counts (discrete Lomax, α = 1.5: about 45 % of
  persons visit once, the median is 2, a few hundred persons at a cap of 500 visits);
* events on the days of 2025 (fewer in summer), each with an artform (15 codes incl. ``unknown``)
  and a base price; persons prefer one artform, and popular events draw more visitors;
* six age bands incl. ``unknown`` per person; prices 0–20,000 cents by price type;
  ~3 % refunded or cancelled; lead-time bands from an ordered date; channels.

Rows are stored in import order (by event date and event), so one person's admissions are spread
over the whole table, as in a real node. Loading: SQLite by ``executemany`` in large transactions
(journal off during the load, secondary indexes rebuilt afterwards), PostgreSQL by ``COPY`` (FK
triggers off during the load, secondary indexes rebuilt afterwards); then ``ANALYZE``. The index
definitions are read back from the migrated schema, so the result is exactly the node's schema.

Datasets are cached under bench/.data/ (SQLite files, Parquet exports) and in the PostgreSQL
database ``bench`` (one schema per dataset), keyed by rows, seed and generator version.

    python -m bench.datasets --rows 1000000 10000000 --engines sqlite postgres
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from node.storage.db import head_revision, make_engine, upgrade
from protocol.catalogue import (
    AGE_BANDS,
    ARTFORMS,
    CHANNELS,
    PRICE_TYPES,
    SEGMENTS,
    UNKNOWN,
    WEEKDAY_CODES,
)

GENERATOR_VERSION = 3  # bump whenever generate() changes, so cached datasets are rebuilt
DATA_DIR = Path(__file__).resolve().parent / ".data"
PG_SERVER = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DATABASE = os.environ.get("BENCH_POSTGRES_DATABASE", "bench")
YEAR = 2025
CHUNK = 500_000
MAX_VISITS = 500

ARTFORM_CODES = tuple(v.code for v in ARTFORMS)
ARTFORM_WEIGHTS = (14, 8, 5, 10, 12, 7, 6, 12, 8, 7, 3, 2, 3, 2, 1)
AGE_CODES = tuple(v.code for v in AGE_BANDS)
AGE_WEIGHTS = (8, 16, 20, 28, 20, 8)
PRICE_TYPE_CODES = tuple(v.code for v in PRICE_TYPES)
PRICE_TYPE_WEIGHTS = (52, 12, 5, 6, 3, 2, 8, 4, 3, 3, 2)
PRICE_FACTORS = (1.0, 0.8, 0.6, 0.0, 0.0, 0.25, 0.85, 0.5, 0.0, 1.0, 1.0)
CHANNEL_CODES = tuple(v.code for v in CHANNELS)
CHANNEL_WEIGHTS = (60, 20, 5, 8, 5, 2)
SEGMENT_CODES = tuple(v.code for v in SEGMENTS)
STATUS_CODES = ("sold", "refunded", "cancelled")
STATUS_WEIGHTS = (97, 2, 1)
LEAD_CODES = ("same_day", "1_6", "7_29", "30_89", "90plus", UNKNOWN)
PERSON_COLUMNS = ("id", "pseudonym", "pc4", "segment", "first_seen")
EVENT_COLUMNS = ("id", "source", "event_key", "artform", "starts_at", "capacity", "is_free")
SECONDARY_INDEXES = ("ix_admission_event_date_person", "ix_admission_person_id")


def _p(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _key(rows: int, seed: int) -> str:
    """Cache key: size, seed, generator version and the node's schema revision."""
    return f"n{rows}_s{seed}_v{GENERATOR_VERSION}_r{head_revision()}"


@dataclass
class Synthetic:
    """One generated dataset as numpy columns (codes index the *_CODES tuples above)."""

    rows: int
    seed: int
    # persons (ids 1..P)
    person_age: np.ndarray
    person_pc4: np.ndarray  # 1000..9999, 0 = unknown
    person_segment: np.ndarray  # index into SEGMENT_CODES
    person_first_day: np.ndarray  # day of year of the first admission, -1 = none
    # events (ids 1..E)
    event_day: np.ndarray
    event_artform: np.ndarray
    # admissions (ids 1..N, in import order)
    person: np.ndarray
    event: np.ndarray  # 0-based event index
    price: np.ndarray
    price_type: np.ndarray
    channel: np.ndarray
    status: np.ndarray
    lead_days: np.ndarray  # -1 = unknown ordered date
    attended: np.ndarray  # 1 yes, 0 no, -1 unknown
    ticket: np.ndarray  # (N, 16) uint8: the keyed ticket reference (pseudo-random, like an HMAC)

    @property
    def persons(self) -> int:
        return len(self.person_age)

    @property
    def events(self) -> int:
        return len(self.event_day)

    # -- frames ----------------------------------------------------------------------------

    def person_frame(self) -> pl.DataFrame:
        frame = pl.DataFrame(
            {
                "id": np.arange(1, self.persons + 1, dtype=np.int64),
                "pc4": self.person_pc4,
                "segment": pl.Series(SEGMENT_CODES).gather(self.person_segment),
                "first": self.person_first_day.astype(np.int32),
            }
        )
        return frame.select(
            "id",
            pl.col("id").cast(pl.String).str.zfill(64).alias("pseudonym"),
            pl.when(pl.col("pc4") > 0).then(pl.col("pc4").cast(pl.String)).alias("pc4"),
            "segment",
            pl.when(pl.col("first") >= 0)
            .then(pl.col("first") + _epoch_day(YEAR))
            .cast(pl.Date)
            .alias("first_seen"),
        )

    def event_frame(self) -> pl.DataFrame:
        frame = pl.DataFrame(
            {
                "id": np.arange(1, self.events + 1, dtype=np.int64),
                "artform": pl.Series(ARTFORM_CODES).gather(self.event_artform),
                "day": self.event_day.astype(np.int32) + _epoch_day(YEAR),
            }
        )
        return frame.select(
            "id",
            pl.lit("bench").alias("source"),
            ("e" + pl.col("id").cast(pl.String)).alias("event_key"),
            "artform",
            (pl.col("day").cast(pl.Date).cast(pl.Datetime("us")) + pl.duration(hours=20)).alias(
                "starts_at"
            ),
            pl.lit(None, pl.Int32).alias("capacity"),
            pl.lit(False).alias("is_free"),
        )

    def admission_frame(self, lo: int, hi: int) -> pl.DataFrame:
        """Admissions lo..hi-1 (0-based), columns as in the admission table."""
        ev = self.event[lo:hi]
        day = self.event_day[ev].astype(np.int32)
        dates = pl.Series(day + _epoch_day(YEAR)).cast(pl.Date)
        lead = self.lead_days[lo:hi]
        lead_code = np.select(
            [lead < 0, lead == 0, lead < 7, lead < 30, lead < 90], [5, 0, 1, 2, 3], 4
        )
        ordered = pl.Series(np.where(lead < 0, 0, day - lead) + _epoch_day(YEAR)).cast(pl.Date)
        att = self.attended[lo:hi]
        ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
        ticket = self.ticket[lo:hi]
        refs = pl.Series(np.frombuffer(ticket.tobytes().hex().encode(), dtype="S32"))
        top = ticket[:, :4].astype(np.int64)
        sample_key = ((top[:, 0] << 24) | (top[:, 1] << 16) | (top[:, 2] << 8) | top[:, 3]) >> 1
        frame = pl.DataFrame(
            {
                "id": ids,
                "ticket_ref": refs.cast(pl.String),
                "sample_key": sample_key,
                "person_id": self.person[lo:hi].astype(np.int64),
                "event_id": ev.astype(np.int64) + 1,
                "event_date": dates,
                "ordered_date": ordered,
                "lead_time": pl.Series(LEAD_CODES).gather(lead_code),
                "weekday": pl.Series(WEEKDAY_CODES).gather((day + _epoch_day(YEAR) + 3) % 7),
                "artform": pl.Series(ARTFORM_CODES).gather(self.event_artform[ev]),
                "price_cents": self.price[lo:hi].astype(np.int32),
                "price_type": pl.Series(PRICE_TYPE_CODES).gather(self.price_type[lo:hi]),
                "channel": pl.Series(CHANNEL_CODES).gather(self.channel[lo:hi]),
                "status": pl.Series(STATUS_CODES).gather(self.status[lo:hi]),
                "attended": pl.Series(att == 1),
                "attended_known": pl.Series(att >= 0),
                "age_band": pl.Series(AGE_CODES).gather(self.person_age[self.person[lo:hi] - 1]),
            }
        )
        d = pl.col("event_date")
        return frame.select(
            "id",
            pl.lit("bench").alias("source"),
            "ticket_ref",
            "person_id",
            "event_id",
            pl.lit(1, pl.Int64).alias("batch_id"),
            "event_date",
            d.dt.strftime("%Y-%m").alias("event_month"),
            (d.dt.year().cast(pl.String) + "-Q" + d.dt.quarter().cast(pl.String)).alias(
                "event_quarter"
            ),
            d.dt.year().cast(pl.String).alias("event_year"),
            "weekday",
            "artform",
            pl.when(pl.col("lead_time") != UNKNOWN).then("ordered_date").alias("ordered_date"),
            "lead_time",
            "price_cents",
            "price_type",
            "channel",
            "status",
            pl.when(pl.col("attended_known")).then(pl.col("attended")).alias("attended"),
            "age_band",
            "sample_key",  # dropped when the node's schema has no such column
        )

    def parquet_frame(self) -> pl.DataFrame:
        """The columns the OpenDP baseline needs, for every admission."""
        parts = []
        for lo in range(0, self.rows, 2_000_000):
            hi = min(self.rows, lo + 2_000_000)
            parts.append(
                self.admission_frame(lo, hi).select(
                    "id",
                    "ticket_ref",
                    "sample_key",
                    "person_id",
                    "event_date",
                    "status",
                    pl.col("event_month").alias("month"),
                    "artform",
                    "age_band",
                    pl.col("price_cents").cast(pl.Int64),
                )
            )
        return pl.concat(parts)


def _epoch_day(year: int) -> int:
    return (date(year, 1, 1) - date(1970, 1, 1)).days


def generate(rows: int, seed: int = 1) -> Synthetic:
    rng = np.random.default_rng(seed)
    days = 365
    n_persons = max(1, round(rows / 4.5))

    # Visits per person: 1 + floor(Lomax(α=1.5, λ=2.1)), capped; then adjusted to exactly `rows`.
    counts = np.minimum(1 + np.floor(rng.pareto(1.5, n_persons) * 2.1), MAX_VISITS).astype(np.int64)
    total = int(counts.sum())
    if total > rows:
        owners = np.repeat(np.arange(n_persons), counts)
        keep = rng.choice(total, rows, replace=False)
        counts = np.bincount(owners[keep], minlength=n_persons)
    elif total < rows:
        extra = rng.choice(n_persons, rows - total, p=counts / total)
        counts = counts + np.bincount(extra, minlength=n_persons)
    person = np.repeat(np.arange(1, n_persons + 1, dtype=np.int64), counts)

    # Events: fewer in July and August; every artform has at least one event.
    n_events = int(np.clip(rows // 250, 500, 40_000))
    month_of_day = np.array(
        [(date.fromordinal(date(YEAR, 1, 1).toordinal() + d)).month for d in range(days)]
    )
    day_w = np.where(np.isin(month_of_day, (7, 8)), 0.5, 1.0)
    event_day = rng.choice(days, n_events, p=day_w / day_w.sum())
    event_artform = rng.choice(len(ARTFORM_CODES), n_events, p=_p(ARTFORM_WEIGHTS))
    event_artform[: len(ARTFORM_CODES)] = np.arange(len(ARTFORM_CODES))
    popularity = rng.lognormal(0.0, 1.0, n_events)
    base_price = np.clip(rng.lognormal(np.log(2800), 0.6, n_events), 500, 20_000)

    # Each admission: the person's favourite artform (65 %) or any, then an event of that artform
    # by popularity: events sorted by artform; cumulative popularity mapped to [a, a+1).
    person_age = rng.choice(len(AGE_CODES), n_persons, p=_p(AGE_WEIGHTS))
    favourite = rng.choice(len(ARTFORM_CODES), n_persons, p=_p(ARTFORM_WEIGHTS))
    artform = np.where(
        rng.random(rows) < 0.65,
        favourite[person - 1],
        rng.choice(len(ARTFORM_CODES), rows, p=_p(ARTFORM_WEIGHTS)),
    )
    by_art = np.argsort(event_artform, kind="stable")
    sorted_art = event_artform[by_art]
    pop = popularity[by_art]
    cum = np.cumsum(pop)
    starts = np.searchsorted(sorted_art, np.arange(len(ARTFORM_CODES)))
    ends = np.searchsorted(sorted_art, np.arange(len(ARTFORM_CODES)), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    span = cum[ends - 1] - before
    scaled = sorted_art + (cum - before[sorted_art]) / span[sorted_art]
    target = artform + rng.random(rows)
    pick = np.minimum(np.searchsorted(scaled, target), n_events - 1)
    event = by_art[pick]

    price_type = rng.choice(len(PRICE_TYPE_CODES), rows, p=_p(PRICE_TYPE_WEIGHTS))
    price = np.round(base_price[event] * np.asarray(PRICE_FACTORS)[price_type] / 50) * 50
    price = np.clip(price, 0, 20_000).astype(np.int32)
    channel = rng.choice(len(CHANNEL_CODES), rows, p=_p(CHANNEL_WEIGHTS))
    status = rng.choice(len(STATUS_CODES), rows, p=_p(STATUS_WEIGHTS)).astype(np.int8)
    lead_days = np.floor(rng.exponential(25.0, rows)).astype(np.int32)
    lead_days[rng.random(rows) < 0.03] = -1
    attended = np.where(status == 0, rng.choice([1, 0, -1], rows, p=[0.9, 0.04, 0.06]), 0)
    ticket = np.frombuffer(rng.bytes(16 * rows), dtype=np.uint8).reshape(rows, 16)

    # Import order: by event date, then event; persons interleave.
    order = np.lexsort((event, event_day[event]))
    person, event = person[order], event[order]
    price, price_type, channel = price[order], price_type[order], channel[order]
    status, lead_days, attended = status[order], lead_days[order], attended[order]

    first = np.full(n_persons + 1, days, dtype=np.int32)
    np.minimum.at(first, person, event_day[event].astype(np.int32))
    first = first[1:]
    first[first == days] = -1
    pc4 = rng.integers(1000, 10_000, n_persons)
    pc4[rng.random(n_persons) < 0.05] = 0
    return Synthetic(
        rows=rows,
        seed=seed,
        person_age=person_age,
        person_pc4=pc4,
        person_segment=rng.choice(len(SEGMENT_CODES), n_persons),
        person_first_day=first,
        event_day=event_day,
        event_artform=event_artform,
        person=person,
        event=event,
        price=price,
        price_type=price_type,
        channel=channel,
        status=status,
        lead_days=lead_days,
        attended=attended.astype(np.int8),
        ticket=ticket,
    )


_BATCH = {
    "id": 1,
    "source": "bench",
    "profile": "bench",
    "file_name": "synthetic",
    "file_sha256": "0" * 64,
    "imported_at": datetime(2026, 1, 1, 12, 0, 0),
    "rows_read": 0,
    "rows_inserted": 0,
    "rows_updated": 0,
    "rows_unchanged": 0,
    "rows_rejected": 0,
}


def _chunks(data: Synthetic) -> Iterator[pl.DataFrame]:
    for lo in range(0, data.rows, CHUNK):
        yield data.admission_frame(lo, min(data.rows, lo + CHUNK))


# -- SQLite ----------------------------------------------------------------------------------


def sqlite_path(rows: int, seed: int = 1) -> Path:
    return DATA_DIR / f"sqlite_{_key(rows, seed)}.db"


def sqlite_url(rows: int, seed: int = 1) -> str:
    return f"sqlite:///{sqlite_path(rows, seed)}"


def _sqlite_rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    """Rows as SQLAlchemy stores them on SQLite: ISO date strings, booleans as 0/1."""
    converted = frame.with_columns(
        pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S.%6f"),
        pl.col(pl.Boolean).cast(pl.Int8),
    )
    return converted.rows()


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def load_sqlite(data: Synthetic, path: Path) -> None:
    tmp = path.with_suffix(".loading")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{tmp}")
    upgrade(engine)
    engine.dispose()
    con = sqlite3.connect(tmp, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA foreign_keys=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        ddl = [
            con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
            for name in SECONDARY_INDEXES
        ]
        for name in SECONDARY_INDEXES:
            con.execute(f"DROP INDEX {name}")
        con.execute("BEGIN")
        batch = dict(_BATCH, rows_read=data.rows, rows_inserted=data.rows)
        batch["imported_at"] = str(batch["imported_at"]) + ".000000"
        con.execute(_insert_sql("import_batch", tuple(batch)), tuple(batch.values()))
        con.executemany(_insert_sql("person", PERSON_COLUMNS), _sqlite_rows(data.person_frame()))
        con.executemany(_insert_sql("event", EVENT_COLUMNS), _sqlite_rows(data.event_frame()))
        present = {row[1] for row in con.execute("PRAGMA table_info(admission)")}
        columns = tuple(c for c in data.admission_frame(0, 1).columns if c in present)
        insert = _insert_sql("admission", columns)
        for frame in _chunks(data):
            con.executemany(insert, _sqlite_rows(frame.select(columns)))
        con.execute("COMMIT")
        for statement in ddl:
            con.execute(statement)
        con.execute("ANALYZE")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    tmp.rename(path)


# -- PostgreSQL -------------------------------------------------------------------------------


def pg_schema(rows: int, seed: int = 1) -> str:
    return f"d_{_key(rows, seed)}"


def pg_url(rows: int, seed: int = 1) -> str:
    return f"{PG_SERVER}/{PG_DATABASE}?options=-csearch_path%3D{pg_schema(rows, seed)}"


def _pg_conninfo(database: str) -> str:
    return PG_SERVER.replace("postgresql+psycopg://", "postgresql://") + f"/{database}"


def ensure_pg_database() -> None:
    with psycopg.connect(_pg_conninfo("postgres"), autocommit=True) as con:
        exists = con.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
        if not exists:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DATABASE)))


def pg_ready(rows: int, seed: int = 1) -> bool:
    ensure_pg_database()
    with psycopg.connect(_pg_conninfo(PG_DATABASE)) as con:
        row = con.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (pg_schema(rows, seed),),
        ).fetchone()
    return row is not None and row[0] == "complete"


def _copy(cur: psycopg.Cursor[tuple[object, ...]], table: str, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    with cur.copy(statement) as copy:
        copy.write(buffer.getvalue())


def load_postgres(data: Synthetic) -> None:
    ensure_pg_database()
    schema = pg_schema(data.rows, data.seed)
    with psycopg.connect(_pg_conninfo(PG_DATABASE), autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    engine = make_engine(pg_url(data.rows, data.seed))
    upgrade(engine)
    engine.dispose()
    with psycopg.connect(_pg_conninfo(PG_DATABASE), autocommit=True) as con:
        con.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        con.execute("SET session_replication_role = replica")  # no FK triggers during the load
        con.execute("SET maintenance_work_mem = '1GB'")
        ddl = [
            con.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                (schema, name),
            ).fetchone()[0]
            for name in SECONDARY_INDEXES
        ]
        with con.transaction():
            for name in SECONDARY_INDEXES:
                con.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            cur = con.cursor()
            batch = dict(_BATCH, rows_read=data.rows, rows_inserted=data.rows)
            _copy(cur, "import_batch", pl.DataFrame([batch]))
            _copy(cur, "person", data.person_frame())
            _copy(cur, "event", data.event_frame())
            present = {
                row[0]
                for row in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = 'admission'",
                    (schema,),
                )
            }
            columns = [c for c in data.admission_frame(0, 1).columns if c in present]
            for frame in _chunks(data):
                _copy(cur, "admission", frame.select(columns))
            for statement in ddl:
                con.execute(statement)
            for table in ("person", "event", "import_batch", "admission"):
                con.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({}, 'id'), max(id)) FROM {}"
                    ).format(sql.Literal(table), sql.Identifier(table))
                )
        con.execute("VACUUM (ANALYZE) admission, person, event, import_batch")
        con.execute(sql.SQL("COMMENT ON SCHEMA {} IS 'complete'").format(sql.Identifier(schema)))


# -- entry points -----------------------------------------------------------------------------


def parquet_path(rows: int, seed: int = 1) -> Path:
    return DATA_DIR / f"admissions_{_key(rows, seed)}_p2.parquet"


def ensure(rows: int, engines: tuple[str, ...], seed: int = 1, *, parquet: bool = True) -> None:
    """Build whatever of the dataset is not cached yet (and say how long it took)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    todo = []
    if "sqlite" in engines and not sqlite_path(rows, seed).exists():
        todo.append("sqlite")
    if "postgres" in engines and not pg_ready(rows, seed):
        todo.append("postgres")
    if parquet and not parquet_path(rows, seed).exists():
        todo.append("parquet")
    if not todo:
        return
    started = time.perf_counter()
    data = generate(rows, seed)
    print(f"generated {rows:,} admissions in {time.perf_counter() - started:.1f} s", flush=True)
    for target in todo:
        started = time.perf_counter()
        if target == "sqlite":
            load_sqlite(data, sqlite_path(rows, seed))
        elif target == "postgres":
            load_postgres(data)
        else:
            tmp = parquet_path(rows, seed).with_suffix(".loading")
            data.parquet_frame().write_parquet(tmp)
            tmp.rename(parquet_path(rows, seed))
        print(
            f"{target}: {rows:,} rows written in {time.perf_counter() - started:.1f} s", flush=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", choices=("sqlite", "postgres"), default=["sqlite"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-parquet", action="store_true")
    args = parser.parse_args()
    for rows in args.rows:
        ensure(rows, tuple(args.engines), args.seed, parquet=not args.no_parquet)


if __name__ == "__main__":
    main()
