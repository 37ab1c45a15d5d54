"""DP query benchmark: the standard report on synthetic data, against two baselines.

For each row count and engine it times, each run in a fresh subprocess (clean peak RSS):

* **ours**: the node's query path end to end: build the spec, compile and run the bounded SQL
  aggregate (``run_aggregate``), add OpenDP noise (``release``), assemble the signed-answer body
  (``QueryAnswer`` to JSON). Noise is on.
* **plain**: the same GROUP BY on the same engine and rows, with no bounding and no noise:
  ``COUNT(*)``, ``COUNT(DISTINCT person_id)``, ``SUM(price_cents)`` by month × artform × age band,
  same WHERE; the rows are fetched into a dict.
* **opendp**: the same question through OpenDP's Polars context on the same rows exported to
  Parquet (``scan_parquet``, same filter, identifier ``person_id``, ``truncate_per_group(c)`` +
  ``truncate_num_groups(g, keep="first")`` for visits and revenue, ``truncate_per_group(1)`` +
  ``truncate_num_groups(g)`` for persons, ``with_keys`` the spec's cells, ``dp.len(signed=True)``,
  ``dp.sum((0, 15000))``), at the same ρ per measure. Scales are set in closed form
  (opendp-notes §4), not by ``summarize``/``release``; the time runs from the Context to the
  three vectors in canonical cell order. It does not depend on the engine.

Runs are interleaved (ours, plain per engine, then OpenDP, repeated), after one discarded warm-up
round, and reported as medians. ``--check`` first verifies that ``run_aggregate`` equals an
independent Polars implementation of the bounds on every engine (the standard report and a
variant with g < c).

    python -m bench.query_bench --rows 1000000 10000000 --engines sqlite postgres --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import datasets as ds

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN = "<!-- BEGIN dp-query (written by bench/query_bench.py; edit there) -->"
END = "<!-- END dp-query -->"
REPORT = "standard"
YEAR = 2025
RHO = 0.25
TIMEOUT = 3600


# -- measurements (each runs in its own process) ------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _spec(query_id: str | None = None) -> Any:
    from protocol.reports import report, year_period

    qid = query_id or f"bench-{uuid.uuid4()}"
    return report(REPORT).build(period=year_period(YEAR), rho=RHO, query_id=qid)


def _engine_url(engine: str, rows: int, seed: int) -> str:
    return ds.sqlite_url(rows, seed) if engine == "sqlite" else ds.pg_url(rows, seed)


def _load_run_aggregate(path: str | None) -> Any:
    """``run_aggregate`` from the node, or from another version of aggregate.py (for before/after
    comparisons, e.g. ``git show HEAD:node/services/aggregate.py > /tmp/aggregate_head.py``)."""
    if path is None:
        from node.services.aggregate import run_aggregate

        return run_aggregate
    import importlib.util

    spec = importlib.util.spec_from_file_location("aggregate_alternative", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run_aggregate


def measure_ours(
    engine: str, rows: int, seed: int, aggregate_file: str | None = None
) -> dict[str, Any]:
    from sqlalchemy import text

    from node.privacy.release import privacy_spent, release
    from node.storage.db import make_engine, make_sessionmaker

    run_aggregate = _load_run_aggregate(aggregate_file)
    from protocol.messages import BudgetStatus, QueryAnswer

    factory = make_sessionmaker(make_engine(_engine_url(engine, rows, seed), write=False))
    with factory() as session:  # connect (and warm the pool) outside the timed path
        session.execute(text("SELECT 1"))
    rss_before = _status_kb("VmRSS")
    cpu0, t0 = _cpu(), time.perf_counter()
    spec = _spec()
    with factory() as session:
        exact = run_aggregate(session, spec)
    t1 = time.perf_counter()
    measures = release(spec, exact, noise=True)
    answer = QueryAnswer(
        query_id=spec.query_id,
        query_hash=spec.digest(),
        catalogue_version=spec.catalogue_version,
        answered_at=datetime.now(UTC),
        group_by=spec.group_by,
        cells=tuple(spec.cells()),
        measures=measures,
        privacy=privacy_spent(spec),
        budget=BudgetStatus(period=str(YEAR), cap_rho=1.0, spent_rho=RHO),
        noise=True,
    )
    body = answer.model_dump_json()
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "sql_seconds": t1 - t0,
        "noise_seconds": t2 - t1,
        "cpu_seconds": _cpu() - cpu0,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "answer_bytes": len(body),
        "totals": {m.measure.value: sum(m.values) for m in measures},
    }


def plain_statement(spec: Any) -> Any:
    from sqlalchemy import and_, func, select

    from node.storage.models import Admission

    a = Admission.__table__.c
    keys = (a.event_month, a.artform, a.age_band)
    return (
        select(
            *keys,
            func.count(),
            func.count(a.person_id.distinct()),
            func.coalesce(func.sum(a.price_cents), 0),
        )
        .where(
            and_(
                a.event_date >= spec.period.start,
                a.event_date <= spec.period.end,
                a.status == "sold",
            )
        )
        .group_by(*keys)
    )


def measure_plain(engine: str, rows: int, seed: int) -> dict[str, Any]:
    from sqlalchemy import text

    from node.storage.db import make_engine, make_sessionmaker

    factory = make_sessionmaker(make_engine(_engine_url(engine, rows, seed), write=False))
    with factory() as session:
        session.execute(text("SELECT 1"))
    rss_before = _status_kb("VmRSS")
    cpu0, t0 = _cpu(), time.perf_counter()
    spec = _spec()
    with factory() as session:
        result = {tuple(r[:3]): tuple(r[3:]) for r in session.execute(plain_statement(spec))}
    t1 = time.perf_counter()
    return {
        "seconds": t1 - t0,
        "cpu_seconds": _cpu() - cpu0,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "cells": len(result),
    }


KEYS = ["month", "artform", "age_band"]


def measure_opendp(rows: int, seed: int) -> dict[str, Any]:
    import opendp.prelude as dp
    import polars as pl
    from opendp.measurements import make_private_lazyframe

    dp.enable_features("contrib")
    spec = _spec()
    bounds = spec.bounds
    c, g = bounds.max_visits_per_person, bounds.effective_cells_per_person
    per_measure = RHO / len(spec.measures)
    rss_before = _status_kb("VmRSS")
    cpu0, t0 = _cpu(), time.perf_counter()
    cells = list(spec.cells())
    keys = pl.LazyFrame(cells, schema=KEYS, orient="row")
    # OpenDP 0.16 rejects date literals in its plans, so the period is cut on the input scan.
    data = pl.scan_parquet(ds.parquet_path(rows, seed)).filter(
        pl.col("event_date").is_between(spec.period.start, spec.period.end)
    )
    in_scope = pl.col("status") == "sold"
    ctx = dp.Context.compositor(
        data=data,
        privacy_unit=dp.unit_of(contributions=1, identifier="person_id"),
        privacy_loss=dp.loss_of(rho=RHO),
        margins=[dp.polars.Margin(max_length=rows)],
    )
    lo, hi = bounds.revenue_min_cents, bounds.revenue_max_cents
    q_visits = (
        ctx.query(rho=2 * per_measure)
        .filter(in_scope)
        .truncate_per_group(c, by=KEYS)
        .truncate_num_groups(g, by=KEYS, keep="first")
        .group_by(KEYS)
        .agg(dp.len(signed=True).alias("visits"), pl.col("price_cents").dp.sum((lo, hi)))
        .with_keys(keys)
    )
    q_persons = (
        ctx.query(rho=per_measure)
        .filter(in_scope)
        .truncate_per_group(1, by=KEYS)
        .truncate_num_groups(g, by=KEYS, keep="first")
        .group_by(KEYS)
        .agg(dp.len(signed=True).alias("persons"))
        .with_keys(keys)
    )
    frames = []
    for query, rho in ((q_visits, 2 * per_measure), (q_persons, per_measure)):
        domain, metric = query._query._chain  # private in 0.16 (opendp-notes §4)

        def make(scale: float, q: Any = query, d: Any = domain, m: Any = metric) -> Any:
            return make_private_lazyframe(
                d, m, dp.zero_concentrated_divergence(), q.polars_plan, global_scale=scale
            )

        scale = (make(1.0).map(1) / rho) ** 0.5 * (1 + 1e-9)
        measurement = make(scale)
        assert measurement.map(1) <= rho
        frames.append(ctx(measurement).collect())
    t1 = time.perf_counter()
    merged = pl.DataFrame(cells, schema=KEYS, orient="row").with_row_index("pos")
    for frame in frames:
        merged = merged.join(frame, on=KEYS, how="left")
    merged = merged.sort("pos")
    vectors = {
        name: merged[column].to_list()
        for name, column in (
            ("visits", "visits"),
            ("persons", "persons"),
            ("revenue", "price_cents"),
        )
    }
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "query_seconds": t1 - t0,
        "cpu_seconds": _cpu() - cpu0,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "cells": len(vectors["visits"]),
        "totals": {name: sum(v or 0 for v in values) for name, values in vectors.items()},
    }


# -- correctness check ----------------------------------------------------------------------


def reference(spec: Any, rows: int, seed: int) -> dict[Any, list[int]]:
    """The documented bounds, reimplemented in Polars on the Parquet export (noise off)."""
    import polars as pl

    from node.services.aggregate import query_salt
    from protocol.query import Measure

    b = spec.bounds
    c, g = b.max_visits_per_person, b.effective_cells_per_person
    dims = dict(zip(spec.group_by, ("month", "artform", "age_band"), strict=True))
    keys = list(dims.values())
    from node.storage.models import Admission

    # The rank key follows the schema: a per-row sample key where there is one (ties broken by
    # ticket_ref; source is constant here), else the row id.
    key = "sample_key" if "sample_key" in Admission.__table__.c else "id"
    rk = (pl.col(key) * 2_654_435_761 + query_salt(spec.query_id)) % 4_294_967_291
    frame = (
        pl.scan_parquet(ds.parquet_path(rows, seed))
        .filter(
            (pl.col("status") == "sold")
            & (pl.col("event_date") >= spec.period.start)
            & (pl.col("event_date") <= spec.period.end)
        )
        .with_columns(
            rk=rk, rev=pl.col("price_cents").clip(b.revenue_min_cents, b.revenue_max_cents)
        )
        .sort("person_id", "rk", "ticket_ref")
        .with_columns(rn=pl.int_range(1, pl.len() + 1).over("person_id"))
        .filter(pl.col("rn") <= c)
    )
    if g < c:
        frame = (
            frame.with_columns(ck=pl.col("rk").min().over("person_id", *keys))
            .with_columns(cr=pl.col("ck").rank("dense").over("person_id"))
            .filter(pl.col("cr") <= g)
        )
    result = (
        frame.group_by(keys)
        .agg(
            visits=pl.len(),
            persons=pl.col("person_id").n_unique(),
            revenue=pl.col("rev").sum(),
        )
        .collect()
    )
    index = {cell: i for i, cell in enumerate(spec.cells())}
    out = {m: [0] * len(index) for m in spec.measures}
    for row in result.iter_rows(named=True):
        pos = index[tuple(row[k] for k in keys)]
        for m in (Measure.VISITS, Measure.PERSONS, Measure.REVENUE):
            out[m][pos] = int(row[m.value])
    return out


def check(engines: tuple[str, ...], rows: int, seed: int) -> bool:
    from node.services.aggregate import run_aggregate
    from node.storage.db import make_engine, make_sessionmaker
    from protocol.query import Bounds, QuerySpec

    standard = _spec("bench-check-0001")
    narrow = QuerySpec.model_validate(
        {
            **standard.model_dump(mode="json"),
            "query_id": "bench-check-0002",
            "bounds": Bounds(
                max_visits_per_person=12, max_cells_per_person=3, revenue_max_cents=15_000
            ).model_dump(),
        }
    )
    ok = True
    for spec in (standard, narrow):
        expected = reference(spec, rows, seed)
        for engine in engines:
            factory = make_sessionmaker(make_engine(_engine_url(engine, rows, seed), write=False))
            started = time.perf_counter()
            with factory() as session:
                got = run_aggregate(session, spec)
            same = got == expected
            ok &= same
            b = spec.bounds
            print(
                f"check {engine:8s} {rows:>11,} rows  c={b.max_visits_per_person} "
                f"g={b.effective_cells_per_person}: {'equal' if same else 'DIFFERENT'} "
                f"({sum(expected[next(iter(expected))]):,} visits kept, "
                f"{time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    return ok


# -- orchestration -------------------------------------------------------------------------


def run_worker(
    variant: str, engine: str, rows: int, seed: int, aggregate_file: str | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.query_bench",
        "--worker",
        variant,
        "--worker-engine",
        engine,
        "--rows",
        str(rows),
        "--seed",
        str(seed),
        *(["--worker-aggregate", aggregate_file] if aggregate_file else []),
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant}/{engine}/{rows} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["child_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024**2:.0f} GiB RAM, {platform.system()}"


def versions() -> str:
    import sqlite3

    import psycopg

    with psycopg.connect(ds._pg_conninfo(ds.PG_DATABASE)) as con:
        pg = con.execute("SHOW server_version").fetchone()
    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {pg[0] if pg else '?'} (server defaults), "
        f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}, "
        f"OpenDP {version('opendp')}, Polars {version('polars')}"
    )


def table(results: dict[tuple[str, int], dict[str, list[dict[str, Any]]]]) -> list[str]:
    lines = [
        "| engine | rows | ours median s (SQL / noise+answer) | plain GROUP BY median s | "
        "ours / plain | OpenDP median s | ours / OpenDP | ours peak RSS MB (before query) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (engine, rows), runs in results.items():
        ours, plain, odp = runs["ours"], runs.get("plain", []), runs.get("opendp", [])
        o = _median(ours, "seconds")
        sql_s, noise_s = _median(ours, "sql_seconds"), _median(ours, "noise_seconds")
        p = _median(plain, "seconds") if plain else None
        d = _median(odp, "seconds") if odp else None
        rss = max(r["peak_rss_mb"] for r in ours)
        start = statistics.median(r["rss_before_mb"] for r in ours)
        lines.append(
            f"| {engine} | {rows:,} | {o:.2f} ({sql_s:.2f} / {noise_s:.2f}) | "
            + (f"{p:.2f} | {o / p:.2f} | " if p else "– | – | ")
            + (f"{d:.2f} | {o / d:.2f} | " if d else "– | – | ")
            + f"{rss:.0f} ({start:.0f}) |"
        )
    return lines


def alternatives_table(
    results: dict[tuple[str, int], dict[str, list[dict[str, Any]]]],
    alt_results: dict[tuple[str, str, int], list[dict[str, Any]]],
) -> list[str]:
    """Before/after: 'ours' with other versions of aggregate.py, against the plain GROUP BY."""
    if not alt_results:
        return []
    lines = [
        "",
        "Other versions of `aggregate.py` (`--alternative`), interleaved with the runs above:",
        "",
        "| version | engine | rows | median s | / plain | current / this |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (variant, engine, rows), runs in alt_results.items():
        alt = _median(runs, "seconds")
        ours = _median(results[(engine, rows)]["ours"], "seconds")
        plain_runs = results[(engine, rows)]["plain"]
        plain = f"{alt / _median(plain_runs, 'seconds'):.2f}" if plain_runs else "–"
        lines.append(
            f"| {variant.partition('@')[2]} | {engine} | {rows:,} | {alt:.2f} | {plain} | "
            f"{ours / alt:.2f} |"
        )
    return lines


def write_results(lines: list[str], path: Path = RESULTS) -> None:
    section = "\n".join([BEGIN, *lines, END])
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = "# Benchmark results\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--engines", nargs="+", choices=("sqlite", "postgres"), default=["sqlite"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--repeat-large",
        type=int,
        default=None,
        help="repeats for row counts of 5M and more (default: --repeat)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds before timing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-opendp", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--check", action="store_true", help="verify exact values first")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--worker", choices=("ours", "plain", "opendp"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-engine", default="sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--worker-aggregate", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--alternative",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also time 'ours' with run_aggregate from FILE (another aggregate.py), as NAME; "
        "printed, not written to RESULTS.md",
    )
    parser.add_argument(
        "--alternative-engines",
        nargs="+",
        choices=("sqlite", "postgres"),
        help="engines to time the alternatives on (default: all of --engines)",
    )
    args = parser.parse_args()

    if args.worker:
        rows = args.rows[0]
        if args.worker == "ours":
            out = measure_ours(args.worker_engine, rows, args.seed, args.worker_aggregate)
        elif args.worker == "plain":
            out = measure_plain(args.worker_engine, rows, args.seed)
        else:
            out = measure_opendp(rows, args.seed)
        print(json.dumps(out))
        return

    engines = tuple(args.engines)
    alternatives = dict(a.split("=", 1) for a in args.alternative)
    results: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    alt_results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    notes: list[str] = []
    for rows in args.rows:
        ds.ensure(rows, engines, args.seed, parquet=True)
        if args.check and not check(engines, rows, args.seed):
            raise SystemExit("run_aggregate differs from the reference; not benchmarking")
        repeat = args.repeat_large if args.repeat_large and rows >= 5_000_000 else args.repeat
        if repeat != args.repeat:
            notes.append(f"{rows:,} rows: {repeat} repeat(s) instead of {args.repeat}.")
        plan = [
            (v, e)
            for e in engines
            for v in ("ours", "plain")
            if not (v == "plain" and args.skip_plain)
        ]
        alt_engines = args.alternative_engines or engines
        plan += [(f"ours@{name}", e) for e in alt_engines for name in alternatives]
        if not args.skip_opendp:
            plan.append(("opendp", "parquet"))
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {step: [] for step in plan}
        for round_ in range(args.warmup + repeat):
            for variant, engine in plan:
                started = time.perf_counter()
                base, _, alt = variant.partition("@")
                result = run_worker(base, engine, rows, args.seed, alternatives.get(alt))
                label = "warm-up" if round_ < args.warmup else f"run {round_ - args.warmup + 1}"
                print(
                    f"{rows:>11,} {engine:8s} {variant:7s} {label:8s} {result['seconds']:8.2f} s "
                    f"(cpu {result['cpu_seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB, "
                    f"wall incl. start-up {time.perf_counter() - started:.1f} s)",
                    flush=True,
                )
                if round_ >= args.warmup:
                    runs[(variant, engine)].append(result)
        for variant, engine in plan:
            if "@" in variant:
                alt_results[(variant, engine, rows)] = runs[(variant, engine)]
        for engine in engines:
            results[(engine, rows)] = {
                "ours": runs[("ours", engine)],
                "plain": runs.get(("plain", engine), []),
                "opendp": runs.get(("opendp", "parquet"), []),
            }

    lines = table(results)
    print("\n".join(lines))
    for (variant, engine, rows), alt_runs in alt_results.items():
        ours = results[(engine, rows)]["ours"]
        print(
            f"{variant:24s} {engine:8s} {rows:>11,}: median {_median(alt_runs, 'seconds'):.2f} s "
            f"(SQL {_median(alt_runs, 'sql_seconds'):.2f} s) vs ours "
            f"{_median(ours, 'seconds'):.2f} s; ratio ours/alternative "
            f"{_median(ours, 'seconds') / _median(alt_runs, 'seconds'):.2f}"
        )
    raw = ds.DATA_DIR / f"query_bench_{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    raw.write_text(
        json.dumps(
            {
                **{f"{e}/{n}": r for (e, n), r in results.items()},
                **{f"{v}/{e}/{n}": r for (v, e, n), r in alt_results.items()},
            },
            indent=1,
            default=str,
        )
    )
    if args.no_write:
        return
    header = [
        "## DP query",
        "",
        f"Run {date.today().isoformat()} with `python -m bench.query_bench "
        + " ".join(sys.argv[1:])
        + "`.",
        "",
        f"* Machine: {machine()}; other work was running on it, so read ratios, not absolutes.",
        f"* Versions: {versions()}.",
        f"* Query: report `{REPORT}` for {YEAR} (month × artform × age band = "
        f"{_spec().cell_count:,} cells; visits, persons, revenue; c = g = 12; revenue clamped to "
        f"0..15,000 cents; ρ = {RHO}), on `bench/datasets.py` data (seed {args.seed}).",
        "* Medians of interleaved runs, each in a fresh process, after a discarded warm-up round. "
        "*ours* is spec → `run_aggregate` → `release` (noise on) → `QueryAnswer` JSON; *plain* is "
        "the same GROUP BY without bounds or noise on the same engine; *OpenDP* is the Polars "
        "context on the Parquet export of the same rows (closed-form scales, not `summarize`), "
        "so the same figure appears on both engines' rows. Peak RSS is the worker's VmHWM "
        "(Python, SQLAlchemy and OpenDP included; in brackets its RSS just before the query). "
        "On PostgreSQL the sorting happens in the server, bounded by its `work_mem` (4 MB "
        "default; larger sorts spill to temporary files).",
        *(f"* {n}" for n in notes),
        "",
    ]
    write_results(header + lines + alternatives_table(results, alt_results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
