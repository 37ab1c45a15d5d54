"""Publishing benchmark (issue 5): a release of 20 tables × 1,000 cells, target ≤ 2 s.

A fresh aggregator home (SQLite, or PostgreSQL with ``--db postgres``) gets 20 closed secure
rounds, each with 1,000 cells (visits by PC4 area, 1,000 area codes) and 10 answering
institutions, written as the aggregator writes them (a ``round`` row with its unmasked sum, one
``task`` row per node). Then ``aggregator.releases.publish.publish`` runs as the publishing API
runs it, inside one transaction: load the 20 rounds, compose the tables (margins, post-processing,
summary), sign, append and commit. Each repetition publishes a new release series, so every run
does the same work. The timed span is from opening the transaction to the commit; the script
also times each step on its own.

There is no baseline named by the issue; the figure is compared with the 2 s target.

    python -m bench.publish_bench --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.home import init_home, load_signing_key
from aggregator.releases import recipe as recipes
from aggregator.releases.chain import seal
from aggregator.releases.compose import compose
from aggregator.releases.publish import publish, round_results
from aggregator.rounds.unmask import Outcome
from aggregator.storage.db import make_async_engine, make_async_sessionmaker
from aggregator.storage.models import Node, Round, Task
from bench.round_bench import machine, prepare_database
from protocol.query import Measure, Mode, Period, Privacy, QuerySpec

TABLES = 20
CELLS = 1_000
NODES = 10
TARGET_SECONDS = 2.0


def spec() -> QuerySpec:
    codes = tuple(str(1000 + i) for i in range(CELLS))
    return QuerySpec(
        title="Visits by PC4 area",
        period=Period(start=date(2025, 1, 1), end=date(2025, 12, 31)),
        group_by=("pc4",),
        domains={"pc4": codes},
        measures=(Measure.VISITS,),
        privacy=Privacy(rho=0.05),
        mode=Mode.SECURE,
    )


async def closed_rounds(url: str, specs: list[QuerySpec], seed: int) -> list[str]:
    """Closed secure rounds for ``specs`` (random sums), with 10 answering institutions each, as
    the aggregator stores them: a ``round`` row with its unmasked sum, a ``task`` row per node."""
    engine = make_async_engine(url)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    round_ids = []
    async with make_async_sessionmaker(engine)() as session, session.begin():
        nodes = [
            Node(id=f"n{i:010d}", institution=f"Instelling {i + 1}", key_id=f"{i:016x}",
                 public_key="x" * 43, status="active", joined_at=now)
            for i in range(NODES)
        ]  # fmt: skip
        session.add_all(nodes)
        for query in specs:
            round_id = str(uuid.uuid4())
            round_ids.append(round_id)
            values = {
                m.value: [rng.randint(0, 5_000) for _ in range(query.cell_count)]
                for m in query.measures
            }
            outcome = Outcome(values, {m.value: 150.0 for m in query.measures}, True, NODES)
            session.add(
                Round(
                    id=round_id, query_id=str(uuid.uuid4()), query_hash="0" * 64,
                    spec=query.model_dump_json(), analyst="bench",
                    created_at=now - timedelta(minutes=5), deadline=now, quorum=3,
                    state="closed", closed_at=now, mode="secure", threshold=7,
                    outcome=outcome.to_json(),
                )
            )  # fmt: skip
            for node in nodes:
                session.add(
                    Task(id=str(uuid.uuid4()), round_id=round_id, node_id=node.id,
                         status="answered", cost_rho=query.privacy.rho_charged,
                         created_at=now, phase=None)
                )  # fmt: skip
    await engine.dispose()
    return round_ids


def recipe_for(round_ids: list[str], series: int) -> recipes.Recipe:
    return recipes.parse(
        {
            "release_id": f"bench-{series}",
            "title": {"nl": "Benchmark", "en": "Benchmark"},
            "description": {"nl": "20 tabellen", "en": "20 tables"},
            "tables": [
                {"table_id": f"t{i:02d}", "round": round_id, "measure": "visits"}
                for i, round_id in enumerate(round_ids)
            ],
        }
    )


async def run(url: str, key_path: Path, repeats: int) -> dict[str, Any]:
    round_ids = await closed_rounds(url, [spec()] * TABLES, seed=5)
    key = load_signing_key(key_path)
    engine = make_async_engine(url)
    factory = make_async_sessionmaker(engine)
    totals: list[float] = []
    steps: dict[str, list[float]] = {"load rounds": [], "compose": [], "seal": []}
    size = 0
    for series in range(repeats + 1):  # the first is a warm-up
        recipe = recipe_for(round_ids, series)
        started = time.perf_counter()
        async with factory() as session, session.begin():
            sealed = await publish(session, key, recipe, {}, datetime.now(UTC))
        elapsed = time.perf_counter() - started
        size = len(sealed.data)
        # The steps alone (outside the timed publish), for the breakdown.
        async with factory() as session:
            t0 = time.perf_counter()
            results = await round_results(session, recipe, {})
            t1 = time.perf_counter()
        document = compose(
            recipe, results, version=1, sequence=1, previous_hash=None, corrects=None,
            published_at=datetime.now(UTC),
        )  # fmt: skip
        t2 = time.perf_counter()
        seal(document, key)
        t3 = time.perf_counter()
        if series == 0:
            continue
        totals.append(elapsed)
        steps["load rounds"].append(t1 - t0)
        steps["compose"].append(t2 - t1)
        steps["seal"].append(t3 - t2)
    await engine.dispose()
    return {
        "median_s": statistics.median(totals),
        "min_s": min(totals),
        "max_s": max(totals),
        "runs": totals,
        "steps_median_s": {name: statistics.median(v) for name, v in steps.items()},
        "release_bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    try:
        settings = init_home(root / "aggregator", "Publish benchmark", prepare_database(args.db))
        result = asyncio.run(run(settings.database_url, settings.signing_key_path, args.repeats))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    verdict = "PASS" if result["median_s"] <= TARGET_SECONDS else "FAIL"
    print(f"* Command: `python -m bench.publish_bench --repeats {args.repeats} --db {args.db}`")
    print(f"* Machine: {machine()}; Python {platform.python_version()}")
    print(f"* Release: {TABLES} tables × {CELLS:,} cells, {NODES} institutions per round; "
          f"signed release {result['release_bytes'] / 1e6:.1f} MB")  # fmt: skip
    print()
    print("| db | runs | publish s (median) | min | max | load rounds s | compose s | seal s | "
          "target ≤ 2 s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    step = result["steps_median_s"]
    print(
        f"| {args.db} | {len(result['runs'])} | {result['median_s']:.3f} | "
        f"{result['min_s']:.3f} | {result['max_s']:.3f} | {step['load rounds']:.3f} | "
        f"{step['compose']:.3f} | {step['seal']:.3f} | {verdict} "
        f"({result['median_s'] / TARGET_SECONDS:.2f} × target) |"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
